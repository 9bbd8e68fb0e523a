"""Every connection of ours resends a lost SCTP packet on libwebrtc's timers, not RFC 4960's."""

from __future__ import annotations

import aiortc.rtcsctptransport as sctp
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport

from crdtsync.transport import sctp_timers
from crdtsync.transport.ice_config import ice_configuration


async def test_a_connection_of_ours_starts_and_floors_its_timeout_as_libwebrtc() -> None:
    ice_configuration(())  # what every connection of ours is built with
    assert (sctp.SCTP_RTO_INITIAL, sctp.SCTP_RTO_MIN) == (0.5, 0.4)
    lan, slow = (sctp.RTCSctpTransport(dtls()) for _ in range(2))
    assert lan._rto == sctp_timers.RTO_INITIAL
    lan._update_rto(0.001)  # a LAN round trip: the floor holds
    assert lan._rto == sctp_timers.RTO_MIN
    slow._update_rto(0.3)  # a slow path: the measured round trip rules
    assert slow._rto == 0.3 + 4 * 0.15


def dtls() -> RTCDtlsTransport:
    return RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
