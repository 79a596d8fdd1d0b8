#!/usr/bin/env bash
# Install OpenStack Keystone (identity) from PyPI into a venv, for tests and development:
# /opt/yun-keystone/bin/{keystone-manage,gunicorn}. Run as root on Debian 12.
#
# Idempotent: a stamp file records the pinned set; when it matches, nothing is touched (<0.1 s).
# Otherwise the venv is rebuilt from scratch (~25 s on 2 cores, most of it compiling .pyc
# files). Every package comes from a wheel, so no compiler or -dev package is needed.
#
# Usage: scripts/install-keystone.sh            (venv at $YUN_KEYSTONE_VENV or /opt/yun-keystone)
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

readonly VENV="${YUN_KEYSTONE_VENV:-/opt/yun-keystone}"
readonly STAMP="$VENV/.yun-keystone-installed"
# Debian's python3 (3.11 on bookworm) and its venv module; not pyenv's, so a fresh machine
# needs nothing but apt.
readonly PYTHON=/usr/bin/python3
readonly APT_PACKAGES=(python3 python3-venv)

# The whole resolved set, pinned: keystone 30.0.0 with gunicorn 27.0.1, as tested
# against SQLite on Python 3.11. Bump together, then re-run the Keystone tests.
readonly CONSTRAINTS="alembic==1.20.1 amqp==5.4.2 aniso8601==10.0.1 attrs==26.1.0 bcrypt==5.0.0
blinker==1.9.0 cachetools==8.0.2 certifi==2026.10.19.post1 cffi==2.1.1 charset-normalizer==3.5.2
click==8.5.1 cryptography==50.0.2 debtcollector==3.1.0 decorator==5.3.1 defusedxml==0.7.1
dnspython==2.9.2 dogpile.cache==1.5.0 elementpath==4.8.0 eventlet==0.41.3 fasteners==0.20
Flask==3.1.3 Flask-RESTful==0.3.10 futurist==3.5.0 greenlet==3.5.6 gunicorn==27.0.1 idna==3.20
iso8601==2.1.0 itsdangerous==2.2.0 Jinja2==3.1.6 jsonschema==4.26.0
jsonschema-specifications==2025.9.1 keystone==30.0.0 keystoneauth1==5.18.1
keystonemiddleware==13.0.1 kombu==5.7.0 Mako==1.4.3 MarkupSafe==3.0.4 msgpack==1.2.4
netaddr==1.3.0 oauthlib==4.0.1 os-service-types==1.9.0 oslo.cache==4.3.0 oslo.concurrency==7.6.1
oslo.config==10.7.0 oslo.context==6.5.0 oslo.db==18.1.1 oslo.i18n==6.9.0 oslo.log==8.3.2
oslo.messaging==18.3.1 oslo.metrics==0.17.0 oslo.middleware==8.2.0 oslo.policy==6.0.1
oslo.serialization==5.11.0 oslo.service==4.8.0 oslo.upgradecheck==2.8.0 oslo.utils==10.2.0
osprofiler==4.4.0 packaging==26.3 Paste==3.10.1 PasteDeploy==3.1.0 pbr==7.1.3 prettytable==3.18.0
prometheus_client==0.26.0 psutil==7.2.2 pycadf==4.1.0 pycparser==3.12 PyJWT==2.15.1
pyOpenSSL==26.4.0 pyparsing==3.3.3 pysaml2==7.5.5 python-dateutil==4.0.0
python-keystoneclient==6.0.0 pytz==2026.6 PyYAML==6.0.4 referencing==0.37.0 repoze-lru==0.8
requests==2.34.2 rfc3986==2.0.0 Routes==2.5.1 rpds-py==2026.9.1 six==1.17.0 SQLAlchemy==2.1.9
statsd==4.0.1 stevedore==5.10.0 testresources==2.1.2 testscenarios==0.7.0
typing_extensions==4.16.0 tzdata==2026.6 urllib3==2.8.0 vine==5.1.0 wcwidth==0.9.4 WebOb==1.8.11
Werkzeug==3.1.9 wrapt==2.5.2 xmlschema==2.5.1 yappi==1.7.6"

step() { echo "install-keystone: $*"; }

if [[ $EUID -ne 0 ]]; then
    echo "install-keystone: must run as root" >&2
    exit 1
fi

# The stamp holds a digest of the pinned set, so changing a pin reinstalls.
wanted="$(printf '%s\n' "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$wanted" &&
    -x "$VENV/bin/keystone-manage" && -x "$VENV/bin/gunicorn" ]]; then
    step "keystone already installed in $VENV, skipped"
    exit 0
fi

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    step "apt: installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

start=$SECONDS
# A venv is not relocatable, so it is built in place; the stamp, written last, marks it whole.
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
constraints_file="$(mktemp)"
trap 'rm -f "$constraints_file"' EXIT
printf '%s\n' "$CONSTRAINTS" | tr ' ' '\n' >"$constraints_file"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: \
    --constraint "$constraints_file" keystone gunicorn
# Import check: fails here, not in the first test, when a wheel does not fit this Python.
PYTHONWARNINGS=ignore "$VENV/bin/python" -c 'import keystone.server.flask.core, gunicorn'
printf '%s\n' "$wanted" >"$STAMP"
step "keystone $("$VENV/bin/pip" show keystone | sed -n 's/^Version: //p') installed in $VENV ($((SECONDS - start)) s)"
