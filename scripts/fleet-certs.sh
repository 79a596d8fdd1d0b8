#!/usr/bin/env bash
# Certificates of the fleet bus (etcd): one CA, etcd's serving certificate, and one client
# certificate per principal. etcd takes the user name from the client certificate's CN.
#   fleet-certs.sh ca DIR                          CA (ca.key, ca.crt) and trust bundle ca-bundle.crt
#   fleet-certs.sh server DIR NAME [--ip IP]... [--dns NAME]...   etcd's certificate NAME.{key,crt}
#   fleet-certs.sh client DIR CN                    client certificate <CN with ':' as '-'>.{key,crt}
#   fleet-certs.sh ca-next DIR                      start a CA rotation: ca-next.*, bundle = old + new
#   fleet-certs.sh ca-promote DIR                   issue from the new CA from now on (old kept as ca-old.*)
#   fleet-certs.sh ca-drop-old DIR                  end the rotation: bundle = current CA only
# CNs: `root` (provisioning), `yun-controller`, `host:<host name>` (one per agent; host names
# are DNS labels, so no host CN can equal another principal's). Options for server/client:
# --days N (default 365), --renew (issue again even if a valid certificate exists: rotation).
# Idempotent: an existing certificate issued by the current CA and valid for 30 more days is kept.
# Keys are ECDSA P-256, mode 0600; certificates 0644. Needs Debian's openssl. See
# docs/ops/fleet-bus-security.md.
set -euo pipefail

die() { echo "fleet-certs: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: $0 ca|server|client|ca-next|ca-promote|ca-drop-old DIR [...]"
cmd=$1 dir=$2; shift 2
[ -d "$dir" ] || (umask 077 && mkdir -p "$dir")

new_key() { # path
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.tmp")
  mv -f "$1.tmp" "$1"
}

make_ca() { # basename CN
  [ -s "$dir/$1.crt" ] && return 0
  new_key "$dir/$1.key"
  openssl req -x509 -new -key "$dir/$1.key" -out "$dir/$1.crt.tmp" -days 3650 -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
  chmod 0644 "$dir/$1.crt.tmp" && mv -f "$dir/$1.crt.tmp" "$dir/$1.crt"
}

write_bundle() { # files...
  cat "$@" >"$dir/ca-bundle.crt.tmp"
  chmod 0644 "$dir/ca-bundle.crt.tmp" && mv -f "$dir/ca-bundle.crt.tmp" "$dir/ca-bundle.crt"
}

# A certificate that is still good: issued by the current CA, valid 30 more days, same CN.
still_valid() { # base cn
  [ -s "$dir/$1.crt" ] && [ -s "$dir/$1.key" ] || return 1
  openssl verify -CAfile "$dir/ca.crt" "$dir/$1.crt" >/dev/null 2>&1 || return 1
  openssl x509 -in "$dir/$1.crt" -noout -checkend $((30 * 86400)) >/dev/null || return 1
  [ "$(openssl x509 -in "$dir/$1.crt" -noout -subject -nameopt multiline | sed -n 's/^ *commonName *= //p')" = "$2" ]
}

issue() { # base cn days renew extensions
  local base=$1 cn=$2 days=$3 renew=$4 ext=$5
  [ -s "$dir/ca.key" ] || die "no CA in $dir: run '$0 ca $dir' first"
  if [ "$renew" = no ] && still_valid "$base" "$cn"; then
    echo "fleet-certs: $dir/$base.crt ($cn) is valid; kept"
    return 0
  fi
  new_key "$dir/$base.key.new"
  openssl req -new -key "$dir/$base.key.new" -subj "/CN=$cn" -out "$dir/$base.csr"
  printf '%s\n' "$ext" >"$dir/$base.ext"
  openssl x509 -req -in "$dir/$base.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -extfile "$dir/$base.ext" \
    -out "$dir/$base.crt.new" 2>/dev/null
  rm -f "$dir/$base.csr" "$dir/$base.ext"
  chmod 0644 "$dir/$base.crt.new"
  # Key first, then certificate: a reader never sees a new certificate with the old key for long.
  mv -f "$dir/$base.key.new" "$dir/$base.key"
  mv -f "$dir/$base.crt.new" "$dir/$base.crt"
  echo "fleet-certs: issued $dir/$base.crt (CN=$cn, $days days)"
}

leaf_opts() { # sets days, renew, ips, dnss from "$@"
  days=365 renew=no ips=() dnss=()
  while [ $# -gt 0 ]; do
    case $1 in
      --days) days=$2; shift 2 ;;
      --renew) renew=yes; shift ;;
      --ip) ips+=("IP:$2"); shift 2 ;;
      --dns) dnss+=("DNS:$2"); shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
}

case $cmd in
  ca)
    make_ca ca yun-fleet-ca
    [ -s "$dir/ca-bundle.crt" ] || write_bundle "$dir/ca.crt"
    ;;
  server)
    [ $# -ge 1 ] || die "usage: $0 server DIR NAME [--ip IP]... [--dns NAME]..."
    name=$1; shift
    leaf_opts "$@"
    all=("${ips[@]}" "${dnss[@]}")
    sans=$(IFS=,; echo "${all[*]}")
    [ -n "$sans" ] || die "server certificate $name needs at least one --ip or --dns"
    # clientAuth too: etcd's gRPC gateway dials etcd itself with this certificate.
    issue "$name" "$name" "$days" "$renew" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$sans"
    ;;
  client)
    [ $# -ge 1 ] || die "usage: $0 client DIR CN [--days N] [--renew]"
    cn=$1; shift
    [[ $cn =~ ^[a-z0-9][a-z0-9:.-]*$ ]] || die "CN $cn: use root, yun-controller or host:<host name>"
    leaf_opts "$@"
    issue "${cn//:/-}" "$cn" "$days" "$renew" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
    ;;
  ca-next)
    [ -s "$dir/ca.crt" ] || die "no CA in $dir"
    make_ca ca-next "yun-fleet-ca-$(date +%Y%m%d)"
    write_bundle "$dir/ca.crt" "$dir/ca-next.crt"
    echo "fleet-certs: trust bundle now holds both CAs; distribute $dir/ca-bundle.crt, then ca-promote"
    ;;
  ca-promote)
    [ -s "$dir/ca-next.crt" ] || die "no ca-next in $dir: run ca-next first"
    mv -f "$dir/ca.key" "$dir/ca-old.key" && mv -f "$dir/ca.crt" "$dir/ca-old.crt"
    mv -f "$dir/ca-next.key" "$dir/ca.key" && mv -f "$dir/ca-next.crt" "$dir/ca.crt"
    echo "fleet-certs: new CA is current; re-issue every certificate with --renew, then ca-drop-old"
    ;;
  ca-drop-old)
    write_bundle "$dir/ca.crt"
    rm -f "$dir/ca-old.key"
    echo "fleet-certs: trust bundle holds only the current CA; distribute $dir/ca-bundle.crt"
    ;;
  *) die "unknown command $cmd" ;;
esac
