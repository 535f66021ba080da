"""CLI command modules: each module exports ``COMMANDS``, a list of click commands/groups.

``robench.cli`` adds every command of every module here to the ``robench`` group, so a new command is
a new file and no edit to a shared module.
"""
