"""Property names have one home (``broker/formats/properties.py``): product code names a property
by its constant, never by typing its key, so a misspelt key is a NameError, not a silent miss."""
from __future__ import annotations

import ast
from pathlib import Path

from mqbench.broker.formats import properties

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_FOLDERS = ("broker", "mqbench", "migrate", "workloads", "codecs")
KEYS = {value: name for name, value in vars(properties).items() if name.startswith("PROPERTY_")}
# Files that still type a key, each with the reason.
NOT_YET: set[str] = set()


def typed_keys(source: str) -> list[tuple[int, str]]:
    """(line, key) of each string constant equal to a property key, f-string expressions included,
    docstrings (and other bare string statements) not."""
    tree = ast.parse(source)
    bare = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return sorted((node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in KEYS
                  and id(node) not in bare)


def test_the_checker_finds_a_typed_key_and_not_a_docstring():
    source = ('def f(m):\n    """DELAY"""\n    return m.get("DELAY"), m.get(\'TAGS\'), "DELAYED"\n'
              'x = f"{m.get(\'KEYS\')!r}"\n')
    assert typed_keys(source) == [(3, "DELAY"), (3, "TAGS"), (4, "KEYS")]


def test_values_are_rocketmq_spelling():
    assert properties.PROPERTY_DELAY == "DELAY" and properties.PROPERTY_UNIQ_KEY == "UNIQ_KEY"
    assert properties.PROPERTY_SHARDING_KEY == "__SHARDINGKEY" and properties.PROPERTY_CRC32 == "__CRC32#"
    assert len(KEYS) == len([n for n in vars(properties) if n.startswith("PROPERTY_")]), "two names, one key"


def test_no_product_module_types_a_property_key():
    bad = []
    for folder in PRODUCT_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            if rel == "broker/formats/properties.py" or rel in NOT_YET:
                continue
            bad += [f"{rel}:{line}: {key!r} (use properties.{KEYS[key]})" for line, key in typed_keys(path.read_text())]
    assert not bad, "property keys typed as strings:\n" + "\n".join(bad)
