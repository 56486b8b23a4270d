"""Minimal pure-Python NFQUEUE client (netlink, no libnetfilter_queue needed).

Only what the lab censor needs: bind a queue, receive full packet copies, issue
ACCEPT/DROP verdicts (possibly out of order, possibly later: delay emulation).
"""
from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from typing import NamedTuple

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 2
NLMSG_DONE = 3

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_PAYLOAD = 10
NFQA_IFINDEX_INDEV = 5
NFQA_IFINDEX_OUTDEV = 6

NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3

NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_PACKET = 2

NF_DROP = 0
NF_ACCEPT = 1


class QueuedPacket(NamedTuple):
    packet_id: int
    hook: int
    payload: bytes  # the IPv4 packet, starting at the IP header
    indev: int
    outdev: int


def _attr(atype: int, data: bytes) -> bytes:
    hdr = struct.pack("=HH", 4 + len(data), atype)
    pad = (-len(data)) % 4
    return hdr + data + b"\0" * pad


class NfQueue:
    def __init__(self, queue_num: int, maxlen: int = 4096) -> None:
        self.queue_num = queue_num
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            pass
        self.sock.bind((0, 0))
        self._seq = 0
        self._config(_attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET)))
        self._config(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0xFFFF, NFQNL_COPY_PACKET))
                     + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen)))

    def fileno(self) -> int:
        return self.sock.fileno()

    def _send(self, msg_type: int, flags: int, family: int, body: bytes) -> int:
        self._seq += 1
        nfgen = struct.pack("!BBH", family, 0, self.queue_num)
        payload = nfgen + body
        hdr = struct.pack("=IHHII", 16 + len(payload), (NFNL_SUBSYS_QUEUE << 8) | msg_type,
                          flags, self._seq, 0)
        self.sock.send(hdr + payload)
        return self._seq

    def _config(self, attrs: bytes) -> None:
        seq = self._send(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, socket.AF_UNSPEC, attrs)
        while True:
            data = self.sock.recv(65536)
            for mtype, mseq, body in self._messages(data):
                if mtype == NLMSG_ERROR and mseq == seq:
                    (err,) = struct.unpack_from("=i", body)
                    if err != 0:
                        raise OSError(-err, f"nfqueue config failed: {errno.errorcode.get(-err, err)}")
                    return

    @staticmethod
    def _messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
        off = 0
        while off + 16 <= len(data):
            length, mtype, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
            if length < 16:
                break
            yield mtype, seq, data[off + 16: off + length]
            off += (length + 3) & ~3

    def recv(self) -> list[QueuedPacket]:
        try:
            data = self.sock.recv(1 << 17)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:  # queue overrun: packets lost, keep going
                return []
            raise
        out: list[QueuedPacket] = []
        for mtype, _seq, body in self._messages(data):
            if mtype != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                continue
            off = 4  # nfgenmsg
            pid = hook = indev = outdev = 0
            payload = b""
            while off + 4 <= len(body):
                alen, atype = struct.unpack_from("=HH", body, off)
                if alen < 4:
                    break
                adata = body[off + 4: off + alen]
                atype &= 0x3FFF
                if atype == NFQA_PACKET_HDR:
                    pid, _proto, hook = struct.unpack_from("!IHB", adata)
                elif atype == NFQA_PAYLOAD:
                    payload = bytes(adata)
                elif atype == NFQA_IFINDEX_INDEV:
                    (indev,) = struct.unpack_from("!I", adata)
                elif atype == NFQA_IFINDEX_OUTDEV:
                    (outdev,) = struct.unpack_from("!I", adata)
                off += (alen + 3) & ~3
            out.append(QueuedPacket(pid, hook, payload, indev, outdev))
        return out

    def verdict(self, packet_id: int, verdict: int) -> None:
        self._send(NFQNL_MSG_VERDICT, NLM_F_REQUEST, socket.AF_UNSPEC,
                   _attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id)))

    def accept(self, packet_id: int) -> None:
        self.verdict(packet_id, NF_ACCEPT)

    def drop(self, packet_id: int) -> None:
        self.verdict(packet_id, NF_DROP)

    def close(self) -> None:
        try:
            self._config(_attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND,
                                                         socket.AF_INET)))
        except OSError:
            pass
        self.sock.close()
