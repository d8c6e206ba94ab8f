"""The process gate: the only way rescue starts a child, and the rules every child obeys.

Why a package: execute (the one place a process starts), lifetime (children die with rescue),
guardian (a recovery's mounts do not outlive a kill -9), grandchildren (secrets kept from
duplicity's own children) and gpghome (a throwaway GnuPG home whose agent ends with it) are
one mechanism, used by every other part of rescue and using none of them but errors.
"""
