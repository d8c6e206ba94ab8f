"""Make a bug-report archive safe to send: every secret replaced by a marker, and listed.

Why rules and not a list of files: secrets hide in many shapes. A support engineer must still
read the configuration, so a rule replaces the value and keeps its key (`wpa-psk [REDACTED by
rescue]`). The rules, applied to every file and diagnostic:

- whole blocks and known formats: PEM/PGP/OpenVPN private key blocks, SSH host keys, password
  hashes (shadow, gshadow, htpasswd, crypt and {SHA} hashes anywhere), JWTs (Kubernetes
  service-account tokens), .pgpass and sasl_passwd passwords, netrc passwords;
- URL credentials (`https://user:PW@host`) and HTTP `Authorization: Basic|Bearer` values;
- command lines: `-u user:PW`, `--password=PW`, `--password PW`, mysql's `-pPW`, `sshpass -p`,
  openssl's `-passin pass:PW`;
- key/value pairs whose key names a secret (password, passwd, pass, pwd, passphrase, secret,
  token, psk, auth, credential, api/access/secret/private key, client-key-data, ...) with the
  separators `=`, `:` and a space: INI, TOML, YAML (block scalars too), shell and `export`,
  JSON and single-line JSON, NetworkManager, wpa_supplicant, interfaces, netplan, AWS;
- the settings' own secret values wherever they occur, and the files the settings name as
  secret files (whole content).

A key is judged by its last words, not by a substring: `client_secret` and `PGPASSWORD` are
secrets, `PasswordAuthentication`, `passphrase_file` and `psk-flags` are not. Each replacement
is recorded (module, path, what, never the value) for the manifest.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MARKER = b"[REDACTED by rescue]"

_NOT_HASHES = {b"", b"*", b"!", b"!!", b"!*", b"x"}
# rescue's settings name their secret files by keys that end in _file
_SECRET_FILE_NAME = re.compile(r"(passphrase|password|secret|token|id_[a-z0-9]+$|key$)", re.I)

# --- which keys name a secret -------------------------------------------------------------------

# a key's last word (or last words, joined) that names a secret
_SECRET_WORDS = {
    "password", "passwd", "pass", "pwd", "pw", "passphrase", "secret", "token", "psk",
    "basicauth", "httpauth", "proxyauth",
    "credential", "credentials", "apikey", "accesskey", "secretkey", "privatekey", "authkey",
    "presharedkey", "keydata", "accountkey", "encryptionkey", "masterkey", "passwordhash",
    "clientsecret", "sessiontoken", "wepkey0", "wepkey1", "wepkey2", "wepkey3",
}  # fmt: skip
# a single word that ends so names a secret too (PGPASSWORD, rpcpassword, bindpw, authtoken)
_SECRET_ENDINGS = ("password", "passwd", "passphrase", "secret", "token", "apikey", "pw")
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def secret_key(key: str) -> bool:
    """Does this key name a secret value? Judged by its last one to three words."""
    words = [w.lower() for part in re.split(r"[^A-Za-z0-9]+", key) for w in _WORD.findall(part)]
    if not words:
        return False
    if words == ["auth"]:  # Docker's "auth"; phase2-auth or auth-method name no secret
        return True
    for size in (1, 2, 3):
        if len(words) >= size and "".join(words[-size:]) in _SECRET_WORDS:
            return True
    last = words[-1]
    return len(last) > 2 and last.endswith(_SECRET_ENDINGS)


# values that say something about a secret without being one
_PLAIN_VALUES = {
    b"yes", b"no", b"true", b"false", b"on", b"off", b"none", b"null", b"~", b"0", b"1",
    b"required", b"optional", b"disabled", b"enabled",
}  # fmt: skip
# tables whose keys are names, not settings (`passwd: files systemd`, `auth 113/tcp`)
_NAME_TABLES = {"nsswitch.conf", "services", "protocols", "rpc", "ethers", "networks"}
# PAM lines (`password required pam_unix.so`): a key word with a space, and no secret at all
_PAM = re.compile(rb"^(\[|required|requisite|sufficient|optional|include|substack)\b")

# --- the patterns -------------------------------------------------------------------------------

_KEY_BLOCK = re.compile(
    rb"-----BEGIN (?P<kind>[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?|OpenVPN Static key V1)-----"
    rb"(?:.*?-----END (?P=kind)-----|.*\Z)",
    re.S,
)
_CRYPT_HASH = re.compile(
    rb"\$(?:1|2[abxy]|5|6|7|y|gy|apr1|md5|sha1|argon2(?:id|i|d)?|pbkdf2[\w-]*)\$"
    rb"[./A-Za-z0-9=,+-]{1,64}\$[./A-Za-z0-9$=,+-]{8,}"  # $id$salt-or-cost$hash: two more $
    rb"|\{(?:S?SHA(?:256|512)?|S?MD5|CRYPT|PBKDF2[\w-]*|ARGON2)\}[./A-Za-z0-9+=$,-]{8,}"
)
_JWT = re.compile(rb"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}")
_URL_USERINFO = re.compile(
    rb"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"<>]*:)(?P<value>[^\s@/'\"<>]+)(?=@)"
)
_AUTHORIZATION = re.compile(
    rb"(?P<head>\b(?:Proxy-)?Authorization[\"']?\s*[:=]?\s*[\"']?(?:Basic|Bearer|Token|Digest)"
    rb"\s+)(?P<value>[^\s'\",;]+)",
    re.I,
)
# curl/wget style -u user:PW, --user user:PW, --proxy-user, -U (also -uuser:PW)
_USER_OPTION = re.compile(
    rb"(?P<head>(?<!\S)(?:-u|-U|--user|--proxy-user)(?:[ \t]+|=)?[\"']?(?P<user>[^\s:\"'@]+):)"
    rb"(?P<value>[^\s\"']+)"
)
# openssl -passin pass:PW
_OPENSSL_PASS = re.compile(rb"(?P<head>(?<!\S)-pass(?:in|out)?[ \t]+pass:)(?P<value>\S+)")
# --password=PW, --db-password PW, --api-key=PW (the option names a secret)
_SECRET_OPTION = re.compile(
    rb"(?P<head>(?<!\S)(?P<key>--?[A-Za-z][\w-]*)(?:=|[ \t]+))"
    rb"(?P<value>\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'|[^\s\"'][^\s]*)"
)
# mysql -pPW (its only form that glues the value on), on lines that run mysql; sshpass -p PW
_MYSQL_P = re.compile(rb"(?P<head>(?<!\S)-p)(?P<value>[^\s\"']\S*|\"[^\"\n]*\"|'[^'\n]*')")
_MYSQL_LINE = re.compile(rb"\b(?:mysql\w*|mariadb\w*)\b")
_SSHPASS = re.compile(rb"(?P<head>\bsshpass[ \t]+-p[ \t]*)(?P<value>\S+)")
# netrc: machine HOST login USER password PW
_NETRC = re.compile(rb"(?P<head>(?<![\w-])(?:password|passwd|account)[ \t]+)(?P<value>\S+)")
_NETRC_LINE = re.compile(rb"^\s*(?:machine|default)\b|\blogin\s+\S+\s+password\s", re.M)

# key SEP value at the start of a line: INI, TOML, YAML, shell, NetworkManager, interfaces
_LINE_KEY = re.compile(
    rb"^(?P<head>(?P<lead>[ \t]*(?:[#;]+[ \t]*)?(?:-[ \t]+)?(?:export[ \t]+|declare[ \t]+-x[ \t]+"
    rb"|setenv[ \t]+|set[ \t]+)?)[\"']?(?P<key>[A-Za-z_][\w.-]*)[\"']?"
    rb"(?P<sep>[ \t]*[=:][ \t]*|[ \t]+))(?P<rest>[^\r\n]*)$",
    re.M,
)
# key=value anywhere in a line (Environment=PGPASSWORD=x, cron's VAR=x cmd, ?token=x&)
_INLINE_KEY = re.compile(
    rb"(?P<head>(?<![\w.$-])(?P<key>[A-Za-z_][\w.-]*)=)"
    rb"(?P<value>\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'|[^\s\"';&|,)}\]]+)"
)
# "key": "value" anywhere (JSON, one line or many; Docker's config.json "auth")
_JSON_KEY = re.compile(
    rb"(?P<head>(?P<q>[\"'])(?P<key>[^\"'\\\n]{1,100})(?P=q)[ \t]*:[ \t]*)"
    rb"(?P<value>\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*')"
)
_BLOCK_SCALAR = re.compile(rb"(?:!\S+[ \t]+)?[|>][+-]?\d*")
# per file name: the field that holds a password
_PGPASS = re.compile(rb"^(?P<head>(?:(?:[^:\\\n]|\\.)*:){4})(?P<value>[^\n]+)$", re.M)
_COLON_USER = re.compile(rb"^(?P<head>[ \t]*[^\s:#]+:)(?P<value>[^\s:]+)", re.M)
_SASL = re.compile(rb"^(?P<head>[ \t]*\S+[ \t]+[^\s:]+:)(?P<value>\S+)", re.M)
_CHAP = re.compile(rb"^(?P<head>[ \t]*[^\s#]\S*[ \t]+\S+[ \t]+)(?P<value>\"[^\"\n]*\"|\S+)", re.M)


@dataclass
class Redactor:
    """Redacts one archive's contents; `done` lists what was replaced."""

    secret_values: list[str] = field(default_factory=list)
    secret_files: set[str] = field(default_factory=set)  # system paths, whole file replaced
    done: list[dict[str, str]] = field(default_factory=list)

    def note(self, module: str, path: str, what: str) -> None:
        self.done.append({"module": module, "path": path, "what": what})

    def learn_settings(self, root: Path, settings_files: Iterable[str]) -> None:
        """Secret files the settings under root name (`*_file` keys), by their system path."""
        for system_path in settings_files:
            if not system_path.endswith(".toml"):
                continue
            try:
                data = tomllib.loads((root / system_path.lstrip("/")).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for section in data.values():
                if isinstance(section, dict):
                    for key, value in section.items():
                        if (
                            key.endswith("_file")
                            and isinstance(value, str)
                            and key != "tls_ca_file"
                        ):
                            self.secret_files.add(value)

    def redact(self, module: str, path: str, data: bytes) -> bytes:
        """data with every secret replaced; each replacement noted."""
        name = PurePosixPath(path).name
        if path in self.secret_files or (
            module == "rescue"
            and not name.endswith((".toml", ".pub"))
            and _SECRET_FILE_NAME.search(name)
        ):
            self.note(module, path, "a secret file (whole content)")
            return MARKER + b"\n"
        data = self._blocks(module, path, data)
        is_host_key = name.startswith("ssh_host_") and name.endswith("_key")
        if is_host_key and data.strip() != MARKER:
            self.note(module, path, "an SSH host private key")
            return MARKER + b"\n"
        data = self._by_name(module, path, name, data)
        data = self._formats(module, path, data)
        if name not in _NAME_TABLES:
            data = self._key_values(module, path, data)
        return self.values(module, path, data)

    def values(self, module: str, path: str, data: bytes) -> bytes:
        """Replace the settings' own secret values wherever they appear."""
        for secret in sorted(self.secret_values, key=len, reverse=True):
            raw = secret.encode()
            if raw and raw in data:
                data = data.replace(raw, MARKER)
                self.note(module, path, "a secret of the settings (by value)")
        return data

    def _blocks(self, module: str, path: str, data: bytes) -> bytes:
        """Private key blocks, password hashes and JWTs: replaced whole, wherever they are."""
        for pattern, what in (
            (_KEY_BLOCK, "private key(s)"),
            (_CRYPT_HASH, "password hash(es)"),
            (_JWT, "token(s) (JWT)"),
        ):
            data, count = pattern.subn(MARKER, data)
            if count:
                self.note(module, path, f"{count} {what}")
        return data

    def _by_name(self, module: str, path: str, name: str, data: bytes) -> bytes:
        """Formats known by their file name, where a field (not a key) holds the secret."""
        if name in ("shadow", "gshadow", "shadow-", "gshadow-"):
            return self._hashes(module, path, data)
        rules: dict[str, tuple[re.Pattern[bytes], str]] = {
            ".pgpass": (_PGPASS, "passwords (.pgpass)"),
            "pgpass.conf": (_PGPASS, "passwords (.pgpass)"),
            "sasl_passwd": (_SASL, "passwords (sasl_passwd)"),
            "chap-secrets": (_CHAP, "passwords (chap-secrets)"),
            "pap-secrets": (_CHAP, "passwords (pap-secrets)"),
        }
        if "htpasswd" in name or name in ("passwd.htpasswd", "users.htpasswd"):
            rules[name] = (_COLON_USER, "password hashes (htpasswd)")
        if name in rules:
            pattern, what = rules[name]
            return self._sub(pattern, data, module, path, what)
        return data

    def _formats(self, module: str, path: str, data: bytes) -> bytes:
        """URL credentials, Authorization headers and command-line passwords."""
        data = self._sub(_URL_USERINFO, data, module, path, "URL credentials")
        data = self._sub(_AUTHORIZATION, data, module, path, "Authorization header values")
        data = self._sub(
            _USER_OPTION,
            data,
            module,
            path,
            "command-line user:password",
            lambda m: not (m.group("user") + m.group("value")).isdigit(),  # -u uid:gid
        )
        data = self._sub(
            _SECRET_OPTION,
            data,
            module,
            path,
            "command-line passwords",
            lambda m: (
                secret_key(m.group("key").decode("ascii"))
                and (m.group("head").endswith(b"=") or not m.group("value").startswith(b"-"))
            ),
        )
        data = self._sub(_OPENSSL_PASS, data, module, path, "command-line passwords")
        data = self._sub(_SSHPASS, data, module, path, "command-line passwords")
        data = self._sub_lines(_MYSQL_LINE, _MYSQL_P, data, module, path, "mysql -p passwords")
        return self._sub_lines(_NETRC_LINE, _NETRC, data, module, path, "netrc passwords")

    def _sub_lines(
        self,
        line_pattern: re.Pattern[bytes],
        pattern: re.Pattern[bytes],
        data: bytes,
        module: str,
        path: str,
        what: str,
    ) -> bytes:
        """_sub on the lines line_pattern finds only: pattern alone would match elsewhere."""
        if not line_pattern.search(data):
            return data
        lines = data.split(b"\n")
        for number, line in enumerate(lines):
            if line_pattern.search(line):
                lines[number] = self._sub(pattern, line, module, path, what)
        return b"\n".join(lines)

    def _sub(
        self,
        pattern: re.Pattern[bytes],
        data: bytes,
        module: str,
        path: str,
        what: str,
        wanted: Callable[[re.Match[bytes]], bool] = lambda _m: True,
    ) -> bytes:
        """Replace the `value` group of each match (that is wanted) by the marker."""
        count = 0

        def replace(match: re.Match[bytes]) -> bytes:
            nonlocal count
            value = match.group("value")
            if MARKER in value or _at_marker(match) or not wanted(match):
                return match.group(0)
            count += 1
            quote = value[:1] if value[:1] in (b'"', b"'") and value[-1:] == value[:1] else b""
            return match.group("head") + quote + MARKER + quote

        data = pattern.sub(replace, data)
        if count:
            self.note(module, path, what)
        return data

    def _hashes(self, module: str, path: str, data: bytes) -> bytes:
        lines = data.split(b"\n")
        users = []
        for number, line in enumerate(lines):
            parts = line.split(b":")
            if len(parts) > 2 and parts[1] not in _NOT_HASHES:
                parts[1] = MARKER
                lines[number] = b":".join(parts)
                users.append(parts[0].decode("utf-8", "replace"))
        if users:
            self.note(module, path, "password hashes of " + ", ".join(users))
        return b"\n".join(lines)

    def _key_values(self, module: str, path: str, data: bytes) -> bytes:
        keys: list[str] = []
        data = self._line_keys(data, keys)
        for pattern in (_INLINE_KEY, _JSON_KEY):
            data = pattern.sub(lambda m: self._inline(m, keys), data)
        if keys:
            self.note(module, path, "values of " + ", ".join(dict.fromkeys(keys)))
        return data

    def _line_keys(self, data: bytes, keys: list[str]) -> bytes:
        """key SEP value lines; the value runs to the line's end (or its closing quote), and a
        YAML block scalar (`key: |`) takes its more-indented lines along."""
        lines = data.split(b"\n")
        out: list[bytes] = []
        number = 0
        while number < len(lines):
            line = lines[number]
            number += 1
            match = _LINE_KEY.match(line)
            if match is None or not secret_key(match.group("key").decode("ascii")):
                out.append(line)
                continue
            sep, rest, lead = match.group("sep"), match.group("rest"), match.group("lead")
            spaced = not sep.strip()
            if spaced and (b"#" in lead or b";" in lead or _PAM.match(rest)):
                out.append(line)  # prose in a comment, or a PAM rule
                continue
            value, tail = _split_value(rest)
            if _BLOCK_SCALAR.fullmatch(value.strip()):  # YAML: the value is the lines below
                out.append(line)
                indent, block = _indent(line), 0
                while number < len(lines) and (
                    not lines[number].strip() or _indent(lines[number]) > indent
                ):
                    if lines[number].strip():
                        block += 1
                        lines[number] = lines[number][: _indent(lines[number])] + MARKER
                    out.append(lines[number])
                    number += 1
                if block:
                    keys.append(match.group("key").decode("ascii"))
                continue
            if not _is_secret_value(value):
                out.append(line)
                continue
            keys.append(match.group("key").decode("ascii"))
            out.append(line[: match.start("rest")] + _marked(value) + tail)
        return b"\n".join(out)

    def _inline(self, match: re.Match[bytes], keys: list[str]) -> bytes:
        value = match.group("value")
        key = match.group("key").decode("utf-8", "replace")
        if not secret_key(key):  # Environment="PGPASSWORD=x": look inside the value
            return match.group("head") + _INLINE_KEY.sub(lambda m: self._inline(m, keys), value)
        if not _is_secret_value(value) or _at_marker(match):
            return match.group(0)
        keys.append(key)
        return match.group("head") + _marked(value)


def _split_value(rest: bytes) -> tuple[bytes, bytes]:
    """(the value, what follows it): a quoted value ends at its quote, keeping `,` after it."""
    stripped = rest.rstrip()
    if stripped[:1] in (b'"', b"'"):
        quote = stripped[:1]
        found = re.match(rb'"(?:[^"\\]|\\.)*"' if quote == b'"' else rb"'[^']*'", stripped)
        if found:
            return found.group(0), rest[found.end() :]
    if stripped.endswith(b","):  # a JSON or YAML flow value
        return stripped[:-1], rest[len(stripped) - 1 :]
    return stripped, rest[len(stripped) :]


def _is_secret_value(value: bytes) -> bool:
    """Not empty, not yet replaced, not a yes/no, not a structure (`{`, `[`) holding more keys."""
    bare = value.strip().strip(b"\"'").strip()
    return (
        bool(bare)
        and MARKER not in bare
        and bare.lower() not in _PLAIN_VALUES
        and bare[:1] not in (b"{", b"[")
    )


def _at_marker(match: re.Match[bytes]) -> bool:
    """The value begins a marker already there (a value rule stops at its first space)."""
    return match.string.startswith(MARKER, match.start("value"))


def _indent(line: bytes) -> int:
    return len(line) - len(line.lstrip())


def _marked(value: bytes) -> bytes:
    quote = value[:1] if value[:1] in (b'"', b"'") and value[-1:] == value[:1] else b""
    return quote + MARKER + quote
