// Package deploy holds no Go code: it is the deployment material
// (iptables and nftables redirect scripts, Kubernetes manifests, a
// docker-compose example, a systemd unit) and the tests that check it.
package deploy
