# Yun test template: volume disks on the console, sourced by /etc/yun/boot (busybox sh).
#
# start_disk_watch USER_DATA
#   Starts a background loop that looks at /sys/block/vd* every 0.5 s for disks with a serial
#   (Yun's volumes: the root disk and the seed have none) and prints, each on a fresh console
#   line (the serial shell's prompt may be pending):
#     YUN-DISK <dev> serial=<serial> bytes=<size> ro=<0|1>     when a disk appears, then
#     YUN-VOLUME-DATA <serial> <text>                           what follows `YUNMARK:` in its
#                                                               first 512 bytes, up to the first
#                                                               newline or NUL (empty: no marker)
#     YUN-VOLUME-WROTE <serial> <text>                          after writing `YUNMARK:<text>\n`
#                                                               at offset 0 (fsynced), for each
#                                                               user-data line
#                                                               `yun-volume-write: <serial> <text>`
#                                                               (optionally after '#') naming a
#                                                               writable disk
#     YUN-DISK-GONE <dev> serial=<serial>                       when it disappears (hot unplug)
#   Disks present at boot (cold attach) are reported like hot-plugged ones. Serials must not
#   contain blanks (Yun's are 20 hex digits).

disk_say() {
    printf '\n%s\n' "$*" >/dev/console
}

# Prints the text after YUNMARK: in the first 512 bytes of block device $1.
volume_marker() {
    dd if="$1" bs=512 count=1 2>/dev/null | tr '\000' '\n' |
        sed -n 's/^.*YUNMARK://p' | head -n 1 | tr -d '\r'
}

# Reports disk $1 (serial $2) and writes the markers user data $3 asks for.
disk_appeared() {
    sectors="$(cat "/sys/block/$1/size" 2>/dev/null)"
    ro="$(cat "/sys/block/$1/ro" 2>/dev/null)"
    disk_say "YUN-DISK $1 serial=$2 bytes=$((${sectors:-0} * 512)) ro=${ro:-0}"
    disk_say "YUN-VOLUME-DATA $2 $(volume_marker "/dev/$1")"
    [ -f "$3" ] && [ "$ro" = 0 ] || return 0
    tr -d '\r' <"$3" | sed -n 's/^[#[:space:]]*yun-volume-write:[[:space:]]*//p' |
        while read -r target text; do
            [ "$target" = "$2" ] || continue
            if printf 'YUNMARK:%s\n' "$text" | dd of="/dev/$1" conv=fsync 2>/dev/null; then
                disk_say "YUN-VOLUME-WROTE $2 $text"
            fi
        done
}

disk_watch() {
    known=""
    while :; do
        current=""
        for sys in /sys/block/vd*; do
            serial="$(cat "$sys/serial" 2>/dev/null)"
            [ -n "$serial" ] || continue
            dev="${sys##*/}"
            # devtmpfs creates the node right after sysfs shows the disk: catch it next round.
            [ -b "/dev/$dev" ] || continue
            entry="$dev=$serial"
            current="$current $entry"
            case " $known " in
                *" $entry "*) ;;
                *) disk_appeared "$dev" "$serial" "$1" ;;
            esac
        done
        for entry in $known; do
            case " $current " in
                *" $entry "*) ;;
                *) disk_say "YUN-DISK-GONE ${entry%%=*} serial=${entry#*=}" ;;
            esac
        done
        known="$current"
        usleep 500000
    done
}

start_disk_watch() {
    disk_watch "$1" </dev/null >/dev/null 2>&1 &
}
