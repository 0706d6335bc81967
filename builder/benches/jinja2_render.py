"""Renders PIC's templates with Python's Jinja2, for comparison with the builder's minijinja.

Usage: jinja2_render.py TEMPLATES_DIR CONTEXT_JSON ITERATIONS SERVICE...
Prints the median seconds of one full render (every template of the given services).
"""

import json
import pathlib
import statistics
import sys
import time

import jinja2


def main() -> None:
    templates_dir, context_file, iterations, *services = sys.argv[1:]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    root = pathlib.Path(templates_dir)
    names = sorted(
        str(p.relative_to(root)) for s in services for p in (root / s).glob("*.j2")
    )
    templates = [env.get_template(n) for n in names]
    context = json.loads(pathlib.Path(context_file).read_text())
    times = []
    for _ in range(int(iterations)):
        start = time.perf_counter()
        for t in templates:
            t.render(context)
        times.append(time.perf_counter() - start)
    print(statistics.median(times))


if __name__ == "__main__":
    main()
