"""The protocol version this client speaks (ClientRequest.version).

It must equal kProtocolVersion in common/wire.h: the CMake configure step warns
and tests/python checks when they differ. When the protocol is bumped, review
the client against proto/PROTOCOL.md before bumping this.
"""

PROTOCOL_VERSION = 1
