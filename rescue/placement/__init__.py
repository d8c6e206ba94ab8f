"""Where restored files go, and the rules that make a restore never destroy anything.

guard.py checks a destination before any work; place.py stages a restore on the destination's
file system and moves it into place; merge.py merges a forced restore into an existing tree;
journal.py is the undo directory that keeps every entry a forced restore replaced; undo.py
puts them back. fsops.py holds the only moves allowed: renames that never replace.
"""
