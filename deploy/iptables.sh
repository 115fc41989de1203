#!/bin/sh
# Redirect outgoing TCP 80/443 to egret's transparent listener with
# iptables (nat table, IPv4 and IPv6), and optionally DNS (UDP and TCP 53)
# to egret's DNS door, or take the redirect away again.
#
# Everything lives in egret's own chains (EGRET_OUTPUT, EGRET_PREROUTING)
# plus one jump rule into each from OUTPUT or PREROUTING. apply replaces
# the chains' contents atomically (iptables-restore --noflush), so running
# it twice leaves one copy; undo removes exactly the jumps and chains it
# created and nothing else.
set -eu

prog=${0##*/}

usage() {
	cat <<EOF
usage: $prog [options] apply|undo|show

Redirect TCP to ports 80 and 443 to egret's transparent listener
(egret serve --transparent :3129) with iptables and ip6tables.

  apply   install or replace the redirect (idempotent)
  undo    remove the redirect: egret's jump rules and EGRET_* chains only
  show    print egret's rules

options:
  --mode host|segment  host: this machine's own outgoing traffic (nat OUTPUT);
                       segment: traffic arriving on --interface from a
                       segment this machine routes (nat PREROUTING)
                       (default: host)
  --port N             egret's transparent port (default: 3129)
  --dns-port N         also redirect DNS (UDP and TCP port 53, whatever
                       resolver it is sent to) to egret's DNS door on port N
                       (egret serve --dns :N); default: DNS is left alone
  --uid UID            user egret runs as, by number or name; its own
                       connections are never redirected, so they cannot
                       loop (host mode; default: 65532)
  --interface IF       the segment's interface (segment mode; required there)
  --ports LIST         destination ports to redirect, comma separated,
                       ranges as A-B (default: 80,443)
  --family F           ipv4, ipv6 or both (default: both; IPv6 is left out
                       when the kernel has no IPv6)
  --exclude CIDR       never redirect traffic to CIDR (repeatable; host mode
                       always excludes 127.0.0.0/8 and ::1)
  -h, --help           this text

examples:
  $prog --uid egret apply
  $prog --mode segment --interface eth1 apply
  $prog --uid egret --dns-port 8053 apply
  $prog undo
EOF
}

die() {
	echo "$prog: $*" >&2
	exit 2
}

mode=host
port=3129
dns_port=
uid=65532
iface=
ports=80,443
family=both
excludes=

# value OPTION ARGCOUNT: fail unless OPTION was given a value.
value() {
	[ "$2" -ge 2 ] || die "$1 needs a value (see --help)"
}

while [ $# -gt 0 ]; do
	case $1 in
	--mode) value "$1" $#; mode=$2; shift 2 ;;
	--port) value "$1" $#; port=$2; shift 2 ;;
	--dns-port) value "$1" $#; dns_port=$2; shift 2 ;;
	--uid) value "$1" $#; uid=$2; shift 2 ;;
	--interface) value "$1" $#; iface=$2; shift 2 ;;
	--ports) value "$1" $#; ports=$2; shift 2 ;;
	--family) value "$1" $#; family=$2; shift 2 ;;
	--exclude) value "$1" $#; excludes="$excludes $2"; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	-*) die "unknown option $1 (see --help)" ;;
	*) break ;;
	esac
done
[ $# -eq 1 ] || { usage >&2; exit 2; }
action=$1

is_port() {
	case $1 in '' | *[!0-9]*) return 1 ;; esac
	[ "$1" -ge 1 ] && [ "$1" -le 65535 ]
}

case $mode in host | segment) ;; *) die "--mode $mode: want host or segment" ;; esac
case $family in ipv4 | ipv6 | both) ;; *) die "--family $family: want ipv4, ipv6 or both" ;; esac
is_port "$port" || die "--port $port: want a port number from 1 to 65535"
if [ -n "$dns_port" ]; then
	is_port "$dns_port" || die "--dns-port $dns_port: want a port number from 1 to 65535"
fi

# multiport wants A:B for ranges and takes at most 15 ports.
mports=
count=0
for p in $(echo "$ports" | tr ',' ' '); do
	lo=${p%-*}
	hi=${p#*-}
	if ! is_port "$lo" || ! is_port "$hi" || [ "$lo" -gt "$hi" ]; then
		die "--ports $ports: $p is not a port or a range A-B"
	fi
	if [ "$lo" = "$hi" ]; then mports="$mports,$lo"; count=$((count + 1)); else mports="$mports,$lo:$hi"; count=$((count + 2)); fi
done
mports=${mports#,}
[ -n "$mports" ] || die "--ports: want at least one port"
[ "$count" -le 15 ] || die "--ports $ports: iptables multiport takes at most 15 ports (a range counts as two)"

if [ "$action" = apply ]; then
	if [ "$mode" = segment ]; then
		[ -n "$iface" ] || die "segment mode needs --interface (the segment's side of this machine)"
	else
		case $uid in
		'' | *[!0-9]*)
			name=$uid
			uid=$(id -u "$name" 2>/dev/null) || die "--uid $name: no such user (start egret's service first if it uses DynamicUser)"
			;;
		esac
	fi
fi

families() {
	case $family in
	ipv4) echo 4 ;;
	ipv6) echo 6 ;;
	both)
		echo 4
		if [ -e /proc/net/if_inet6 ]; then echo 6; fi
		;;
	esac
}

ipt() {
	if [ "$1" = 4 ]; then shift; iptables -w 5 "$@"; else shift; ip6tables -w 5 "$@"; fi
}

restore() {
	if [ "$1" = 4 ]; then iptables-restore -w 5 --noflush; else ip6tables-restore -w 5 --noflush; fi
}

# chain_rules FAMILY: egret's chain for the mode, in iptables-restore form.
chain_rules() {
	fam=$1
	if [ "$mode" = host ]; then
		chain=EGRET_OUTPUT
		echo ":$chain - [0:0]"
		echo "-A $chain -m owner --uid-owner $uid -j RETURN"
	else
		chain=EGRET_PREROUTING
		echo ":$chain - [0:0]"
	fi
	for cidr in $excludes; do
		case $cidr in
		*:*) [ "$fam" = 6 ] && echo "-A $chain -d $cidr -j RETURN" ;;
		*) [ "$fam" = 4 ] && echo "-A $chain -d $cidr -j RETURN" ;;
		esac
	done
	# DNS before the loopback exception: a host resolver on 127.0.0.53
	# (systemd-resolved) is redirected too.
	if [ -n "$dns_port" ]; then
		echo "-A $chain -p udp -m udp --dport 53 -j REDIRECT --to-ports $dns_port"
		echo "-A $chain -p tcp -m tcp --dport 53 -j REDIRECT --to-ports $dns_port"
	fi
	if [ "$mode" = host ]; then
		if [ "$fam" = 4 ]; then echo "-A $chain -d 127.0.0.0/8 -j RETURN"; else echo "-A $chain -d ::1/128 -j RETURN"; fi
	fi
	echo "-A $chain -p tcp -m multiport --dports $mports -j REDIRECT --to-ports $port"
}

# jump_rules prints the rules (without -A/-I/-D), one a line, that send
# traffic into egret's chain for the mode: TCP, and UDP with --dns-port.
jump_rules() {
	protos=tcp
	if [ -n "$dns_port" ]; then protos="tcp udp"; fi
	for proto in $protos; do
		if [ "$mode" = host ]; then
			echo "OUTPUT -p $proto -m comment --comment egret -j EGRET_OUTPUT"
		else
			echo "PREROUTING -i $iface -p $proto -m comment --comment egret -j EGRET_PREROUTING"
		fi
	done
}

apply_family() {
	fam=$1
	{
		echo "*nat"
		chain_rules "$fam"
		echo "COMMIT"
	} | restore "$fam"
	jump_rules | while read -r jump; do
		# shellcheck disable=SC2086 # the rule is meant to split into words
		if ! ipt "$fam" -t nat -C $jump 2>/dev/null; then
			# shellcheck disable=SC2086
			ipt "$fam" -t nat -I $jump
		fi
	done
	# Only now drop what an earlier apply with another mode, interface or
	# --dns-port left: the new redirect is in place first, so nothing
	# slips past.
	current=$(jump_rules | sed 's/^/-A /')
	egret_jumps "$fam" | while read -r rule; do
		if ! printf '%s\n' "$current" | grep -qxF -- "$rule"; then
			# shellcheck disable=SC2086 # -S output splits into the rule's words
			ipt "$fam" -t nat -D ${rule#-A }
		fi
	done
	if [ "$mode" = host ]; then other=EGRET_PREROUTING; else other=EGRET_OUTPUT; fi
	drop_chain "$fam" "$other"
}

# drop_chain FAMILY CHAIN deletes CHAIN if it exists.
drop_chain() {
	if ipt "$1" -t nat -S "$2" >/dev/null 2>&1; then
		ipt "$1" -t nat -F "$2"
		ipt "$1" -t nat -X "$2"
	fi
}

# egret_jumps FAMILY prints egret's jump rules in -S form, if any.
egret_jumps() {
	for builtin in OUTPUT PREROUTING; do
		ipt "$1" -t nat -S "$builtin" 2>/dev/null | grep -E -- '-j EGRET_(OUTPUT|PREROUTING)$' || true
	done
}

undo_family() {
	fam=$1
	# Listing does not create the nat table; nothing to do without it.
	ipt "$fam" -t nat -S >/dev/null 2>&1 || return 0
	egret_jumps "$fam" | while read -r rule; do
		# shellcheck disable=SC2086 # -S output splits into the rule's words
		ipt "$fam" -t nat -D ${rule#-A }
	done
	drop_chain "$fam" EGRET_OUTPUT
	drop_chain "$fam" EGRET_PREROUTING
}

show_family() {
	fam=$1
	echo "# IPv$fam"
	egret_jumps "$fam"
	for chain in EGRET_OUTPUT EGRET_PREROUTING; do
		ipt "$fam" -t nat -S "$chain" 2>/dev/null || true
	done
}

case $action in
apply)
	for fam in $(families); do apply_family "$fam"; done
	;;
undo)
	# Both families whatever --family says: undo leaves nothing behind.
	undo_family 4
	if command -v ip6tables >/dev/null 2>&1 && [ -e /proc/net/if_inet6 ]; then undo_family 6; fi
	;;
show)
	for fam in $(families); do show_family "$fam"; done
	;;
*) die "unknown command $action: want apply, undo or show" ;;
esac
