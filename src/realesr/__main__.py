from realesr.cli import entry

entry()
