"""How soon a lost SCTP packet is sent again: the aiortc internal we touch.

aiortc keeps RFC 4960's retransmission timeout bounds: 3 s before the first round trip is
measured, never under 1 s after. On a LAN a round trip takes a millisecond, so every packet
lost (a lossy link, or a burst that overflows a busy receiver's UDP buffer) stalls its data
channel for a whole second: measured here, a newcomer opening 1,000 documents from two
holders in one process spent 1 of its 1.8 s idle in one such timeout, and convergence under
loss moved in steps of ~1 s. libwebrtc's SCTP (dcsctp) starts at 0.5 s and never goes
under 0.4 s (``DcSctpOptions``); ``install()`` gives aiortc the same bounds. Slow paths
are unaffected: the timeout still follows the measured round trip (SRTT + 4 RTTVAR) above
the floor. The bounds are aiortc's module constants, so every aiortc connection of the
process gets them, as every browser tab gets libwebrtc's.
"""

from __future__ import annotations

import aiortc.rtcsctptransport as sctp

__all__ = ["RTO_INITIAL", "RTO_MIN", "install"]

RTO_INITIAL = 0.5  # seconds, before a round trip is measured (libwebrtc's rto_initial)
RTO_MIN = 0.4  # seconds, the floor of the measured timeout (libwebrtc's rto_min)


def install() -> None:
    """Give aiortc's SCTP libwebrtc's retransmission timeout bounds; idempotent."""
    sctp.SCTP_RTO_INITIAL = RTO_INITIAL
    sctp.SCTP_RTO_MIN = RTO_MIN  # type: ignore[assignment]  # an int there, seconds all the same
