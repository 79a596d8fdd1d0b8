# Yun test template: static tenant NICs and a ping prober, sourced by /etc/yun/boot (busybox sh).
#
# apply_network_config FILE
#   Applies the NoCloud network-config the agent writes for VMs with tenant NICs. This is not a
#   YAML parser: it reads exactly the layout of agent/src/seed.rs render_static_network_config
#   (one key per line; an ethernet entry is a quoted key indented by two spaces; its
#   `macaddress`, `set-name`, `addresses: ["ip/prefix"]` (first address only), `mtu` and a
#   route's `via` follow on their own lines). Anything else (the DHCP config of a VM without
#   NICs, `ethernets: {}`) configures nothing. For each entry it finds the interface with that
#   MAC, renames it, sets the MTU, brings it up, adds the address and the default route, and
#   prints one console line:
#     YUN-NET <name> <mac> <ip/prefix> up        (or "... missing" / "... failed")
#
# start_pings USER_DATA
#   For every line `yun-ping: <ip> [<rounds> [<interval_s>]]` of the user data (it may be
#   commented out with '#', so a #cloud-config stays valid), pings <ip> once per round in the
#   background (defaults: 1 round, 1 s apart) and prints after each round:
#     YUN-PING <ip> ok|fail <round>
#   Each line starts on a fresh console line (the serial shell's prompt may be pending).

unquote() {
    v="$1"
    v="${v#\[}"
    v="${v%\]}"
    v="${v#\"}"
    v="${v%\"}"
    echo "$v"
}

# Sets IFACE to the interface whose MAC is $1 (waits up to 5 s for the driver to probe it).
iface_with_mac() {
    tries=0
    while [ "$tries" -lt 50 ]; do
        for path in /sys/class/net/*; do
            [ "$(cat "$path/address" 2>/dev/null)" = "$1" ] || continue
            IFACE="${path##*/}"
            return 0
        done
        tries=$((tries + 1))
        usleep 100000
    done
    return 1
}

net_apply_entry() {
    [ -n "$net_mac" ] || return 0
    name="${net_name:-$net_key}"
    if ! iface_with_mac "$net_mac"; then
        echo "YUN-NET $name $net_mac $net_addr missing" >/dev/console
        return 0
    fi
    state=up
    ip link set dev "$IFACE" down
    if [ "$IFACE" != "$name" ]; then ip link set dev "$IFACE" name "$name" || state=failed; fi
    if [ -n "$net_mtu" ]; then ip link set dev "$name" mtu "$net_mtu" || state=failed; fi
    ip link set dev "$name" up || state=failed
    if [ -n "$net_addr" ]; then ip addr add "$net_addr" dev "$name" || state=failed; fi
    if [ -n "$net_gw" ]; then ip route add default via "$net_gw" dev "$name" || state=failed; fi
    echo "YUN-NET $name $net_mac $net_addr $state" >/dev/console
}

net_reset_entry() {
    net_key="$1" net_mac="" net_name="" net_addr="" net_mtu="" net_gw=""
}

apply_network_config() {
    config="$1"
    [ -f "$config" ] || return 0
    ip link set dev lo up
    net_reset_entry ""
    while IFS= read -r line; do
        line="$(echo "$line" | tr -d '\r')"
        case "$line" in
            "  "[!\ ]*:)
                net_apply_entry
                key="${line#  }"
                net_reset_entry "$(unquote "${key%:}")"
                continue
                ;;
        esac
        # Split "key: value" on blanks; no globbing (`["10.0.0.5/24"]` is a bracket pattern).
        set -f
        # shellcheck disable=SC2086
        set -- $line
        set +f
        [ "$1" = "-" ] && shift
        case "$1" in
            macaddress:) net_mac="$(unquote "$2" | tr 'A-F' 'a-f')" ;;
            set-name:) net_name="$(unquote "$2")" ;;
            addresses:) net_addr="$(unquote "${2%,}")" ;;
            mtu:) net_mtu="$2" ;;
            via:) net_gw="$(unquote "$2")" ;;
        esac
    done <"$config"
    net_apply_entry
}

start_pings() {
    [ -f "$1" ] || return 0
    tr -d '\r' <"$1" | sed -n 's/^[#[:space:]]*yun-ping:[[:space:]]*//p' |
        while read -r target rounds interval _; do
            [ -n "$target" ] || continue
            ping_loop "$target" "${rounds:-1}" "${interval:-1}" </dev/null >/dev/null 2>&1 &
        done
}

ping_loop() {
    round=1
    while [ "$round" -le "$2" ]; do
        if ping -c 1 -W 2 "$1" >/dev/null 2>&1; then result=ok; else result=fail; fi
        printf '\nYUN-PING %s %s %s\n' "$1" "$result" "$round" >/dev/console
        round=$((round + 1))
        [ "$round" -le "$2" ] && sleep "$3"
    done
}
