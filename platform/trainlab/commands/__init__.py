"""One module per `trainlab` command: ``add_arguments(parser)`` and ``run(args) -> exit code``.

Modules here import only the standard library at top level; heavy imports happen inside ``run``.
"""
