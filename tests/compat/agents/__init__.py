"""Agents written against the published Atoms SDK (smallestai 4.4.0), kept as source.

The compatibility tests load each file twice: as written, on the published SDK, and with
its imports rewritten (`tests.compat.porting.port_imports`), on ours.
"""
