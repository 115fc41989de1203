#!/bin/sh
# Redirect outgoing TCP 80/443 to egret's transparent listener with
# nftables, and optionally DNS (UDP and TCP 53) to egret's DNS door, or
# take the redirect away again.
#
# Everything lives in one table of egret's own, `inet egret_redirect`
# (IPv4 and IPv6 together; `inet egret` is the filter table that
# `egret export --format nftables` writes). apply replaces that table in one transaction, so running
# it twice leaves one copy and no packet sees a half-built table; undo
# deletes the table and touches nothing else.
set -eu

prog=${0##*/}
table=egret_redirect

usage() {
	cat <<EOF
usage: $prog [options] apply|undo|show

Redirect TCP to ports 80 and 443 to egret's transparent listener
(egret serve --transparent :3129) with nftables, in the table inet $table.

  apply   install or replace the redirect (idempotent, atomic)
  undo    delete the table inet $table (nothing else)
  show    print the table

options:
  --mode host|segment  host: this machine's own outgoing traffic (hook output);
                       segment: traffic arriving on --interface from a
                       segment this machine routes (hook prerouting)
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
  --family F           ipv4, ipv6 or both (default: both)
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
is_port "$port" || die "--port $port: want a port number from 1 to 65535"
if [ -n "$dns_port" ]; then
	is_port "$dns_port" || die "--dns-port $dns_port: want a port number from 1 to 65535"
fi

case $family in
ipv4) only="meta nfproto ipv4 " ;;
ipv6) only="meta nfproto ipv6 " ;;
both) only= ;;
*) die "--family $family: want ipv4, ipv6 or both" ;;
esac

set_ports=
for p in $(echo "$ports" | tr ',' ' '); do
	lo=${p%-*}
	hi=${p#*-}
	if ! is_port "$lo" || ! is_port "$hi" || [ "$lo" -gt "$hi" ]; then
		die "--ports $ports: $p is not a port or a range A-B"
	fi
	if [ "$lo" = "$hi" ]; then set_ports="$set_ports, $lo"; else set_ports="$set_ports, $lo-$hi"; fi
done
set_ports=${set_ports#, }
[ -n "$set_ports" ] || die "--ports: want at least one port"

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

# chain prints egret's one chain for the mode.
chain() {
	if [ "$mode" = host ]; then
		echo "	chain output {"
		echo "		type nat hook output priority -100; policy accept;"
		echo "		meta skuid $uid return comment \"egret's own connections\""
		iif=
	else
		echo "	chain prerouting {"
		echo "		type nat hook prerouting priority dstnat; policy accept;"
		iif="iifname \"$iface\" "
	fi
	for cidr in $excludes; do
		case $cidr in
		*:*) echo "		ip6 daddr $cidr return" ;;
		*) echo "		ip daddr $cidr return" ;;
		esac
	done
	# DNS before the loopback exception: a host resolver on 127.0.0.53
	# (systemd-resolved) is redirected too.
	if [ -n "$dns_port" ]; then
		echo "		$only${iif}meta l4proto { tcp, udp } th dport 53 redirect to :$dns_port comment \"DNS to egret's DNS door\""
	fi
	if [ "$mode" = host ]; then
		echo "		ip daddr 127.0.0.0/8 return"
		echo "		ip6 daddr ::1 return"
	fi
	echo "		$only${iif}meta l4proto tcp th dport { $set_ports } redirect to :$port"
	echo "	}"
}

exists() {
	nft list table inet "$table" >/dev/null 2>&1
}

case $action in
apply)
	# Creating the table first makes the delete valid when it is absent;
	# the whole file is one transaction.
	{
		echo "table inet $table"
		echo "delete table inet $table"
		echo "table inet $table {"
		chain
		echo "}"
	} | nft -f -
	;;
undo)
	if exists; then nft delete table inet "$table"; fi
	;;
show)
	if exists; then nft list table inet "$table"; fi
	;;
*) die "unknown command $action: want apply, undo or show" ;;
esac
