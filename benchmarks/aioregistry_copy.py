"""The copy benchmark's Python peer: one ``aioregistry`` copy, as a whole process.

Run by ``benchmarks/copy.py`` with the Python of the benchmark cache's own virtual environment
(where ``benchmarks/peers.py`` installs ``aioregistry``; never ``.venv``), with ``-P`` so that
this folder, whose ``copy.py`` would shadow the standard library's, is not on ``sys.path``:

    $SWAPPER_BENCH_CACHE/venv/bin/python -P benchmarks/aioregistry_copy.py SRC DST --cafile PEM

``SRC`` and ``DST`` are ``https://HOST:PORT/REPO:TAG``. ``AsyncRegistryClient.copy_refs`` is the
library's own copy: it walks an index into every child manifest and blob (all platforms, with
up to 8 uploads at a time), skips what the target has (``HEAD``), mounts only within one
registry, and writes each manifest with the bytes it downloaded (digests are kept). Blobs go up
as ``PATCH`` requests of 5 MiB each, then a ``PUT``. Nothing is printed on success.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl

from aioregistry import AsyncRegistryClient, parse_image_name


async def copy(source: str, target: str, cafile: str | None) -> None:
    context = ssl.create_default_context(cafile=cafile)
    async with AsyncRegistryClient(ssl_context=context) as client:
        await client.copy_refs(parse_image_name(source), parse_image_name(target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--cafile")
    args = parser.parse_args()
    asyncio.run(copy(args.source, args.target, args.cafile))


if __name__ == "__main__":
    main()
