"""C versions of the pcap record walk and the fast-path header gather (analyzer/_speedups.c)."""
from typing import Optional

import numpy as np
import numpy.typing as npt

def pcap_scan(
    buf: bytes, big_endian: bool, nanosecond: bool, max_record_len: int, /
) -> tuple[int, int, bool, bytearray]: ...
def extract(
    buf: bytes,
    offsets: npt.NDArray[np.int64],
    caplens: npt.NDArray[np.int64],
    linktypes: npt.NDArray[np.int64],
    /,
) -> Optional[bytearray]: ...
def pcapng_scan(
    buf: bytes, big_endian: bool, interfaces: list[tuple[int, float, float, int]],
    max_record_len: int, /,
) -> tuple[int, bool, bool, list[tuple[int, float, float, int]], list[int], dict[str, int], int,
           bytearray]: ...
