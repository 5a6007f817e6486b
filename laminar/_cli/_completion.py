"""Shell completion generated from the parser itself, so it never falls behind the commands.

`laminar completion bash` prints a bash script: a table from each command path ("laminar",
"laminar topic", "laminar topic create", ...) to the words that may follow it, and a function that walks the words typed
so far through that table. zsh runs the same script through bashcompinit. No dependency needed.
"""

from __future__ import annotations

import argparse
import shlex

_FUNCTION = """_laminar_complete() {
    local cur="${COMP_WORDS[COMP_CWORD]}" path="laminar" word i
    local -A words=(
%s
    )
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        if [[ -n "${words["$path $word"]+set}" ]]; then
            path="$path $word"
        fi
    done
    COMPREPLY=($(compgen -W "${words["$path"]}" -- "$cur"))
}
complete -o default -F _laminar_complete laminar
"""
_ZSH_PREAMBLE = "autoload -U +X bashcompinit && bashcompinit\n"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _table(parser: argparse.ArgumentParser, path: str, table: dict[str, list[str]]) -> None:
    children = _subparsers(parser)
    words = list(children)
    for action in parser._actions:
        words += [o for o in action.option_strings if o.startswith("--")]
        if not action.option_strings and action.choices and not isinstance(action, argparse._SubParsersAction):
            words += [str(c) for c in action.choices]
    table[path] = words
    for name, child in children.items():
        _table(child, f"{path} {name}", table)


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    table: dict[str, list[str]] = {}
    _table(parser, "laminar", table)
    rows = "\n".join(f"        [{shlex.quote(path)}]={shlex.quote(' '.join(words))}" for path, words in table.items())
    body = _FUNCTION % rows
    return (_ZSH_PREAMBLE + body) if shell == "zsh" else body
