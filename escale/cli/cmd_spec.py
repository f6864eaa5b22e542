"""``escale spec show PRESET|FILE`` and ``escale spec list``: YAML to start from."""

from __future__ import annotations

import argparse

from escale.cli.helptext import with_example
from escale.spec import TABLE3, field_paths, load_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spec", help="show preset specs as YAML",
                       **with_example("Specs as YAML to start from: `show` one, `list` the presets and fields.",
                                      "escale spec show ESeg-Lite-S > my-variant.yaml"))
    ssub = p.add_subparsers(dest="spec_command", metavar="ACTION")
    ssub.required = True
    show = ssub.add_parser("show", help="print a preset's (or a file's) resolved spec as YAML",
                           **with_example("A preset's (or a file's) resolved spec as YAML, with its spec_id.",
                                          "escale spec show ESeg-S --set decoder.max_level=7 > my-variant.yaml"))
    show.add_argument("spec", help="preset name (e.g. ESeg-S) or YAML/JSON file")
    show.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override")
    show.set_defaults(func=_show)
    lst = ssub.add_parser("list", help="list presets and overridable fields",
                          **with_example("The paper presets (Table 3) and the dotted fields --set can override.",
                                         "escale spec list"))
    lst.set_defaults(func=_list)


def _show(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec).with_overrides(args.set)
    print(f"# spec_id: {spec.spec_id}")
    print(spec.to_yaml(), end="")
    return 0


def _list(args: argparse.Namespace) -> int:
    print("presets: " + ", ".join(TABLE3))
    print("fields:  " + ", ".join(field_paths()))
    return 0
