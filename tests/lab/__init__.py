"""Real-stack censorship lab (issue #5).

Network namespaces (client -- censor/router -- servers, resolver, VPN host) built with
iproute2, real kernel TCP/IP stacks, real dnsmasq/dig/wireguard-go/openvpn where available,
and an on-path GFW-like censor (NFQUEUE consumer + raw-socket injector) in the router.

The lab is independent of the code under test: nothing here imports ``analyzer``.
"""
