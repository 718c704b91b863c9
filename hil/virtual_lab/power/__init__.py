"""Power for virtual boards through a real PDU protocol.

`switch` is an HTTP "power switch" on 127.0.0.1 that speaks Digital Loggers' REST API (the
protocol of labgrid's `digitalloggers_restapi` NetworkPowerPort model) and starts or kills one
command per outlet, so a virtual board is powered through labgrid's NetworkPowerDriver like a
real board behind a PDU. `dli` is the protocol itself, without I/O.
"""
