"""Generate the committed JSON Schema files under ``schemas/json/`` from the models.

``python -m schemas.jsonschema`` rewrites them; ``--check`` exits 1 when any file is
stale (the test suite runs the same check), so the files never drift from the code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from schemas.events import WIRE_MODELS, Event

SCHEMA_DIR = Path(__file__).parent / "json"


def schema_filename(model: type[Event]) -> str:
    return f"{model.record_type}.schema.json"


def render(model: type[Event]) -> str:
    schema = model.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://cryptopulse.dev/schemas/{schema_filename(model)}"
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[str, str]:
    return {schema_filename(model): render(model) for model in WIRE_MODELS}


def stale_files(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing, outdated or no longer generated."""
    expected = expected_files()
    stale = [
        name
        for name, text in expected.items()
        if not (directory / name).is_file() or (directory / name).read_text("utf-8") != text
    ]
    stale += sorted(p.name for p in directory.glob("*.schema.json") if p.name not in expected)
    return stale


def write_all(directory: Path = SCHEMA_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    expected = expected_files()
    for path in directory.glob("*.schema.json"):
        if path.name not in expected:
            path.unlink()
    for name, text in expected.items():
        (directory / name).write_text(text, "utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when a schema file is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            sys.stderr.write(
                "stale JSON Schema files: " + ", ".join(stale) + "\nrun: python -m schemas.jsonschema\n"
            )
            return 1
        return 0
    write_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
