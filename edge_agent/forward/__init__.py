"""Sinks: each drains the buffer on its own and acknowledges what it delivered.

    sink = registry.sink(kind).make(cfg, ctx)      # ctx: registry.SinkContext
    async with sink:
        await sink.run()          # until cancelled

A sink has `name` (its name in the buffer), `counters` (a dict of numbers, mapped onto
the standard ones by its `SinkSpec.counters`), `connected` (it can deliver now) and
`trouble` (why it cannot, for /health; None when fine).  Adding a sink is one module
(its `SinkSpec`: config model under `forward:`, factory, checks, counters) and one
`register_sink` line here.
"""
from edge_agent.forward import files_spec, mqtt_spec
from edge_agent.registry import register_sink

register_sink(mqtt_spec.SPEC)
register_sink(files_spec.SPEC)
