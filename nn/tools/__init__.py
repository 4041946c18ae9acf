"""The commands, on top of everything: rlgen-train, -eval, -watch, -generate, -runs, -plot,
-search and -export. They sit apart from the core: nothing below imports them
(tests/test_layers.py), and they reach trainers through the names configs give."""
