"""Put on PYTHONPATH by the plain-install tests (tests/hostile/test_class8_plain_install.py): the optional extras of
realesr become unimportable, as on `pip install realesr` without extras, even in a venv that has them all."""

import sys

BLOCKED = {"av", "starlette", "uvicorn", "multipart", "python_multipart", "ray", "onnx", "onnxruntime"}
BLOCKED |= {"matplotlib", "tensorboard"}


class _NoExtras:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoExtras())

import importlib.util  # noqa: E402

_find_spec = importlib.util.find_spec


def _find_spec_without_extras(name, package=None):
    # A probe for an extra ("is onnx installed?") answers as on a plain install: not found.
    if name.split(".")[0] in BLOCKED:
        return None
    return _find_spec(name, package)


importlib.util.find_spec = _find_spec_without_extras
