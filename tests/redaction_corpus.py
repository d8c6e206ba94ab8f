"""A corpus of real-format secret files for the bug-report redaction test.

Each case is one file as an admin has it (the format's own surrounding lines), with one secret
generated from a seed, unique to the file. `keep` lists lines that must be in the redacted file
exactly (context, and the key with the marker in place of the value), so redaction cannot pass
by emptying a file. `needles` are the byte strings that must appear nowhere in the archive: the
secret, and where the file holds it encoded, the encoded forms (base64 of `user:password`, of a
PEM key, of a Kubernetes Secret value).
"""

from __future__ import annotations

import base64
import json
import random
import string
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

M = "[REDACTED by rescue]"
_ALNUM = string.ascii_letters + string.digits
_CRYPT = "./" + _ALNUM


@dataclass
class Case:
    path: str
    module: str  # the module that archives it (corpus: the test's drop-in module)
    text: str  # {s} is the secret; {b64:user} is base64 of user:{s}; {pem} a PEM key
    keep: list[str]
    kind: str = "word"


@dataclass
class Planted:
    case: Case
    secret: str
    needles: list[bytes] = field(default_factory=list)

    @property
    def member(self) -> str:
        return f"modules/{self.case.module}/files{self.case.path}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _secret(rng: random.Random, kind: str) -> str:
    def pick(alphabet: str, n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    makers: dict[str, Callable[[], str]] = {
        "word": lambda: pick(_ALNUM, 24),
        "hex64": lambda: pick("0123456789abcdef", 64),
        "wgkey": lambda: _b64(rng.randbytes(32)),
        "apr1": lambda: f"$apr1${pick(_CRYPT, 8)}${pick(_CRYPT, 22)}",
        "bcrypt": lambda: f"$2y$10${pick(_CRYPT, 53)}",
        "sha": lambda: "{SHA}" + _b64(rng.randbytes(20)),
        "sha512crypt": lambda: f"$6${pick(_CRYPT, 16)}${pick(_CRYPT, 86)}",
        "yescrypt": lambda: f"$y$j9T${pick(_CRYPT, 22)}${pick(_CRYPT, 43)}",
        "jwt": lambda: ".".join(
            [
                _b64url(b'{"alg":"RS256","kid":"' + pick(_ALNUM, 12).encode() + b'"}'),
                _b64url(
                    json.dumps(
                        {
                            "iss": "kubernetes/serviceaccount",
                            "sub": "system:serviceaccount:default:" + pick(_ALNUM, 10),
                        }
                    ).encode()
                ),
                _b64url(rng.randbytes(64)),
            ]
        ),
        "pem": lambda: "\n".join(textwrap.wrap(_b64(rng.randbytes(600)), 64)),
    }
    return makers[kind]()


def _pem(body: str, kind: str = "PRIVATE KEY") -> str:
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"


CERT = _pem("MIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGUtaXMtbm90LWEtc2VjcmV0", "CERTIFICATE")

CASES: list[Case] = [
    Case("/etc/network/interfaces", "network",
         "auto lo\niface lo inet loopback\n\nauto wlan0\niface wlan0 inet dhcp\n"
         "    wpa-ssid Office\n    wpa-psk {s}\n",
         ["iface wlan0 inet dhcp", "    wpa-ssid Office", f"    wpa-psk {M}"]),
    Case("/etc/network/interfaces.d/wlan1", "network",
         "iface wlan1 inet dhcp\n    wpa-key-mgmt WPA-EAP\n    wpa-identity bob\n"
         "    wpa-password {s}\n",
         ["    wpa-identity bob", f"    wpa-password {M}"]),
    Case("/etc/wpa_supplicant/wpa_supplicant.conf", "corpus",
         'ctrl_interface=/run/wpa_supplicant\nupdate_config=1\n\nnetwork={\n    ssid="Home"\n'
         '    psk="{s}"\n    key_mgmt=WPA-PSK\n}\n',
         ['    ssid="Home"', f'    psk="{M}"', "    key_mgmt=WPA-PSK"]),
    Case("/etc/wpa_supplicant/wpa_supplicant-wlan0.conf", "corpus",
         'network={\n\tssid="Lab"\n\t#psk="lab password"\n\tpsk={s}\n}\n',
         ['\tssid="Lab"', f"\tpsk={M}"], "hex64"),
    Case("/etc/NetworkManager/system-connections/home.nmconnection", "network",
         "[connection]\nid=home\ntype=wifi\n\n[wifi]\nmode=infrastructure\nssid=home\n\n"
         "[wifi-security]\nkey-mgmt=wpa-psk\npsk-flags=0\npsk={s}\n\n[ipv4]\nmethod=auto\n",
         ["id=home", "key-mgmt=wpa-psk", "psk-flags=0", f"psk={M}", "method=auto"]),
    Case("/etc/NetworkManager/system-connections/corp.nmconnection", "network",
         "[connection]\nid=corp\ntype=ethernet\n\n[802-1x]\neap=peap;\nidentity=bob\n"
         "password={s}\nphase2-auth=mschapv2\n",
         ["eap=peap;", "identity=bob", f"password={M}", "phase2-auth=mschapv2"]),
    Case("/etc/netplan/50-wifi.yaml", "network",
         'network:\n  version: 2\n  wifis:\n    wlan0:\n      dhcp4: true\n      access-points:\n'
         '        "Office":\n          password: "{s}"\n',
         ["      dhcp4: true", '        "Office":', f'          password: "{M}"']),
    Case("/etc/netplan/60-eap.yaml", "network",
         "network:\n  ethernets:\n    eth1:\n      auth:\n        key-management: eap\n"
         "        method: peap\n        identity: alice@example.invalid\n        password: {s}\n",
         ["        key-management: eap", "        identity: alice@example.invalid",
          f"        password: {M}"]),
    Case("/root/.bashrc", "corpus",
         "# ~/.bashrc\nalias ll='ls -l'\nexport PGHOST=db.example.invalid\nexport PGPASSWORD={s}\n",
         ["alias ll='ls -l'", "export PGHOST=db.example.invalid", f"export PGPASSWORD={M}"]),
    Case("/etc/profile.d/mysql.sh", "corpus",
         '# mysql client defaults\nexport MYSQL_HOST=db1\nexport MYSQL_PWD="{s}"\n',
         ["export MYSQL_HOST=db1", f'export MYSQL_PWD="{M}"']),
    Case("/etc/default/reporting", "corpus",
         "# sourced by reporting.service\nREPORT_DB=reports\nMYSQL_PWD={s}\nVERBOSE=1\n",
         ["REPORT_DB=reports", f"MYSQL_PWD={M}", "VERBOSE=1"]),
    Case("/etc/oauth2-proxy/oauth2-proxy.conf", "corpus",
         "provider github\nclient_id 8a7b6c5d4e3f\nclient_secret {s}\nemail_domain *\n",
         ["provider github", "client_id 8a7b6c5d4e3f", f"client_secret {M}", "email_domain *"]),
    Case("/etc/cron.d/offsite", "cron",
         "SHELL=/bin/sh\n15 3 * * * root curl -fsS -u backup:{s} -T /var/backups/db.gz "
         "https://store.example.invalid/up/\n",
         ["SHELL=/bin/sh", f"15 3 * * * root curl -fsS -u backup:{M} -T /var/backups/db.gz "
          "https://store.example.invalid/up/"]),
    Case("/etc/cron.d/dbdump", "cron",
         "0 2 * * * root mysqldump --user=backup --password={s} --all-databases "
         "> /var/backups/all.sql\n",
         [f"0 2 * * * root mysqldump --user=backup --password={M} --all-databases "
          "> /var/backups/all.sql"]),
    Case("/etc/cron.d/dbcheck", "cron",
         "30 4 * * 0 root mysqlcheck -uroot -p{s} --all-databases --silent\n",
         [f"30 4 * * 0 root mysqlcheck -uroot -p{M} --all-databases --silent"]),
    Case("/var/spool/cron/crontabs/root", "cron",
         "# m h dom mon dow command\n*/5 * * * * mysqladmin --user root --password {s} ping\n",
         ["# m h dom mon dow command", f"*/5 * * * * mysqladmin --user root --password {M} ping"]),
    Case("/etc/gitsync/remote.conf", "corpus",
         "[remote]\nupstream = https://deploy:{s}@git.example.invalid/app.git\nbranch = main\n",
         ["[remote]", f"upstream = https://deploy:{M}@git.example.invalid/app.git",
          "branch = main"]),
    Case("/etc/apt/auth.conf.d/private.conf", "corpus",
         "machine apt.example.invalid login bob password {s}\n",
         [f"machine apt.example.invalid login bob password {M}"]),
    Case("/root/.netrc", "corpus",
         "machine ftp.example.invalid\n  login backup\n  password {s}\n",
         ["machine ftp.example.invalid", "  login backup", f"  password {M}"]),
    Case("/root/.pgpass", "corpus",
         "# hostname:port:database:username:password\ndb.example.invalid:5432:app:appuser:{s}\n",
         [f"db.example.invalid:5432:app:appuser:{M}"]),
    Case("/root/.my.cnf", "corpus",
         "[client]\nuser=root\npassword={s}\nhost=localhost\n\n[mysqldump]\nquick\n",
         ["[client]", "user=root", f"password={M}", "host=localhost", "quick"]),
    Case("/etc/mysql/debian.cnf", "corpus",
         "# Automatically generated for Debian scripts. DO NOT TOUCH!\n[client]\n"
         "host     = localhost\nuser     = debian-sys-maint\npassword = {s}\n"
         "socket   = /var/run/mysqld/mysqld.sock\n",
         ["user     = debian-sys-maint", f"password = {M}",
          "socket   = /var/run/mysqld/mysqld.sock"]),
    Case("/root/.docker/config.json", "corpus",
         '{\n\t"auths": {\n\t\t"registry.example.invalid": {\n\t\t\t"auth": "{b64:deploy}"\n'
         '\t\t}\n\t},\n\t"psFormat": "table {{.Names}}"\n}\n',
         ['\t\t"registry.example.invalid": {', f'\t\t\t"auth": "{M}"',
          '\t"psFormat": "table {{.Names}}"']),
    Case("/root/.aws/credentials", "corpus",
         "[default]\naws_access_key_id = AKIAEXAMPLEKEYID1234\naws_secret_access_key = {s}\n"
         "region = eu-west-1\n",
         ["aws_access_key_id = AKIAEXAMPLEKEYID1234", f"aws_secret_access_key = {M}",
          "region = eu-west-1"]),
    Case("/root/.aws/config", "corpus",
         "[profile ci]\nregion = eu-central-1\naws_access_key_id = ASIAEXAMPLE5678\n"
         "aws_session_token = {s}\noutput = json\n",
         ["[profile ci]", f"aws_session_token = {M}", "output = json"]),
    Case("/etc/apache2/.htpasswd", "corpus",
         "alice:{s}\n", [f"alice:{M}"], "apr1"),
    Case("/etc/nginx/htpasswd", "corpus",
         "bob:{s}\n", [f"bob:{M}"], "bcrypt"),
    Case("/etc/apache2/htpasswd.sha", "corpus",
         "carol:{s}\n", [f"carol:{M}"], "sha"),
    Case("/etc/kubernetes/admin.conf", "corpus",
         "apiVersion: v1\nkind: Config\nusers:\n- name: kubernetes-admin\n  user:\n"
         "    client-certificate-data: {b64cert}\n    client-key-data: {b64pem}\n",
         ["kind: Config", "- name: kubernetes-admin", "    client-certificate-data: {b64cert}",
          f"    client-key-data: {M}"], "pem"),
    Case("/home/alice/.kube/config", "corpus",
         "apiVersion: v1\nclusters:\n- cluster:\n    server: https://10.0.0.1:6443\n  name: prod\n"
         "users:\n- name: ci\n  user:\n    token: {s}\n",
         ["    server: https://10.0.0.1:6443", "- name: ci", f"    token: {M}"]),
    Case("/etc/kubernetes/serviceaccount/token", "corpus", "{s}", [M], "jwt"),
    Case("/etc/kubernetes/secret-db.yaml", "corpus",
         "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\ndata:\n"
         "  username: YWRtaW4=\n  password: {b64s}\n",
         ["kind: Secret", "  name: db", "  username: YWRtaW4=", f"  password: {M}"]),
    Case("/etc/haproxy/site.pem", "corpus", CERT + "{pem}",
         ["-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"], "pem"),
    Case("/etc/ssl/private/legacy.key", "corpus",
         "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00AA\n\n"
         "{s}\n-----END RSA PRIVATE KEY-----\n",
         [M], "pem"),
    Case("/etc/shadow", "users",
         "root:!:19700:0:99999:7:::\nalice:{s}:19700:0:99999:7:::\nnobody:*:19700:0:99999:7:::\n",
         ["root:!:19700:0:99999:7:::", f"alice:{M}:19700:0:99999:7:::",
          "nobody:*:19700:0:99999:7:::"], "sha512crypt"),
    Case("/etc/gshadow", "users",
         "root:*::\nsudo:*::alice\ndevs:{s}::alice\n",
         ["sudo:*::alice", f"devs:{M}::alice"], "yescrypt"),
    Case("/etc/postfix/sasl_passwd", "corpus",
         "[smtp.example.invalid]:587 relay@example.invalid:{s}\n",
         [f"[smtp.example.invalid]:587 relay@example.invalid:{M}"]),
    Case("/etc/ppp/chap-secrets", "corpus",
         "# Secrets for authentication using CHAP\n# client\tserver\tsecret\t\tIP addresses\n"
         "dsluser\t*\t{s}\t*\n",
         ["# client\tserver\tsecret\t\tIP addresses", f"dsluser\t*\t{M}\t*"]),
    Case("/etc/wireguard/wg0.conf", "corpus",
         "[Interface]\nAddress = 10.8.0.1/24\nListenPort = 51820\nPrivateKey = {s}\n\n[Peer]\n"
         "PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nAllowedIPs = 10.8.0.2/32\n",
         ["ListenPort = 51820", f"PrivateKey = {M}",
          "PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="], "wgkey"),
    Case("/etc/systemd/system/reporting.service", "services",
         "[Unit]\nDescription=reports\n\n[Service]\nEnvironment=\"DB_PASSWORD={s}\" \"LANG=C\"\n"
         "ExecStart=/usr/local/bin/reports\n",
         ["Description=reports", f'Environment="DB_PASSWORD={M}" "LANG=C"',
          "ExecStart=/usr/local/bin/reports"]),
    Case("/etc/systemd/system/sync.service.d/override.conf", "services",
         "[Service]\nExecStart=\nExecStart=/usr/bin/rclone sync /srv s3:bucket "
         "--s3-secret-access-key {s} --s3-access-key-id AKIA1234\n",
         ["ExecStart=", f"ExecStart=/usr/bin/rclone sync /srv s3:bucket --s3-secret-access-key"
          f" {M} --s3-access-key-id AKIA1234"]),
    Case("/etc/webapp/settings.yaml", "corpus",
         "server:\n  port: 8080\nmailer:\n  api_key: {s}\n  from: noreply@example.invalid\n",
         ["  port: 8080", f"  api_key: {M}", "  from: noreply@example.invalid"]),
    Case("/etc/webapp/config.json", "corpus",
         '{\n  "database": {\n    "host": "db1",\n    "password": "{s}",\n'
         '    "port": 5432\n  }\n}\n',
         ['    "host": "db1",', f'    "password": "{M}",', '    "port": 5432']),
    Case("/etc/webapp/inline.json", "corpus",
         '{"name":"hook","url":"https://hooks.example.invalid","secret":"{s}","active":true}\n',
         [f'{{"name":"hook","url":"https://hooks.example.invalid","secret":"{M}","active":true}}']),
    Case("/etc/webapp/secrets.toml", "corpus",
         '[session]\nsecret_key = "{s}"\ncookie_name = "sid"\n',
         [f'secret_key = "{M}"', 'cookie_name = "sid"']),
    Case("/etc/webapp/.env", "corpus",
         "DEBUG=false\nDJANGO_SECRET_KEY='{s}'\nALLOWED_HOSTS=example.invalid\n",
         ["DEBUG=false", f"DJANGO_SECRET_KEY='{M}'", "ALLOWED_HOSTS=example.invalid"]),
    Case("/etc/nslcd.conf", "corpus",
         "uri ldap://ldap.example.invalid/\nbase dc=example,dc=invalid\n"
         "binddn cn=nslcd,dc=example,dc=invalid\nbindpw {s}\n",
         ["base dc=example,dc=invalid", "binddn cn=nslcd,dc=example,dc=invalid", f"bindpw {M}"]),
    Case("/etc/cron.d/status-push", "cron",
         "*/10 * * * * root curl -s -H 'Authorization: Bearer {s}' https://status.example.invalid\n",
         [f"*/10 * * * * root curl -s -H 'Authorization: Bearer {M}' https://status.example.invalid"]),
    Case("/etc/webapp/app.ini", "corpus",
         "[server]\nhttp_port = 3000\n\n[auth]\ntoken={s}\n",
         ["http_port = 3000", "[auth]", f"token={M}"]),
    Case("/etc/webapp/signing.yaml", "corpus",
         "signing:\n  algorithm: ed25519\n  private_key: |\n    {s}\n  rotate_days: 90\n",
         ["  algorithm: ed25519", "  private_key: |", f"    {M}", "  rotate_days: 90"]),
    Case("/etc/hostapd/hostapd.conf", "corpus",
         "interface=wlan0\nssid=guest\nwpa=2\nwpa_key_mgmt=WPA-PSK\nwpa_passphrase={s}\n",
         ["ssid=guest", "wpa_key_mgmt=WPA-PSK", f"wpa_passphrase={M}"]),
    Case("/srv/compose/docker-compose.yml", "corpus",
         "services:\n  db:\n    image: postgres:16\n    environment:\n      - POSTGRES_USER=app\n"
         "      - POSTGRES_PASSWORD={s}\n",
         ["    image: postgres:16", "      - POSTGRES_USER=app", f"      - POSTGRES_PASSWORD={M}"]),
    Case("/usr/local/sbin/make-p12", "corpus",
         "#!/bin/sh\nset -e\nopenssl pkcs12 -export -in site.crt -inkey site.key -passout pass:{s}"
         " -out site.p12\n",
         ["set -e", "openssl pkcs12 -export -in site.crt -inkey site.key -passout pass:"
          f"{M} -out site.p12"]),
    Case("/usr/local/sbin/push-logs", "corpus",
         "#!/bin/sh\nsshpass -p {s} scp /var/log/syslog logs@10.0.0.9:\n",
         [f"sshpass -p {M} scp /var/log/syslog logs@10.0.0.9:"]),
    Case("/etc/webapp/cache.conf", "corpus",
         "[cache]\nbackend = redis\nurl = redis://:{s}@cache.example.invalid:6379/0\n",
         ["backend = redis", f"url = redis://:{M}@cache.example.invalid:6379/0"]),
]  # fmt: skip


def plant(root: Path, seed: int) -> list[Planted]:
    """Write every case under root, each with its own secret from seed."""
    planted = []
    secrets: set[str] = set()
    for number, case in enumerate(CASES):
        rng = random.Random(f"{seed}:{number}:{case.path}")
        secret = _secret(rng, case.kind)
        assert secret not in secrets
        secrets.add(secret)
        text, needles = case.text, [secret.encode()]
        if case.kind == "pem":
            key = _pem(secret)
            needles = [line.encode() for line in secret.splitlines()]
            needles.append(_b64(key.encode()).encode())
            text = text.replace("{pem}", key).replace("{b64pem}", _b64(key.encode()))
            text = text.replace("{b64cert}", _b64(CERT.encode()))
        if "{b64:" in text:
            user = text.split("{b64:")[1].split("}")[0]
            encoded = _b64(f"{user}:{secret}".encode())
            text = text.replace("{b64:" + user + "}", encoded)
            needles.append(encoded.encode())
        if "{b64s}" in text:
            text = text.replace("{b64s}", _b64(secret.encode()))
            needles.append(_b64(secret.encode()).encode())
        text = text.replace("{s}", secret)
        target = root / case.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o600)
        keep = [line.replace("{b64cert}", _b64(CERT.encode())) for line in case.keep]
        case = Case(case.path, case.module, case.text, keep, case.kind)
        planted.append(Planted(case, secret, needles))
    return planted


def corpus_module(planted: list[Planted], more: list[str]) -> str:
    """The drop-in module (modules.d/corpus.toml) that archives the cases no built-in one does,
    and the paths in more."""
    paths = [p.case.path for p in planted if p.case.module == "corpus"] + more
    return f'description = "secrets in real formats"\npaths = {json.dumps(paths)}\n'
