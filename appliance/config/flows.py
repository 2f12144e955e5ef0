"""The flows' policy scripts as the old API's config keys: `script_flow__N` with params [id, text].

The old API's clients (halonctl's `hsl dump / diff / pull / push`) list configKeys items as
`{name, params}` and take a script from every item whose name looks like `<kind>_flow__<N>`:
`params` item 0 is the script's name and the last item its text. Here one such key stands for
each entry of the document's `scripts` table, numbered from 1 in document order (new scripts are
appended, so the numbers of the others stay); writing one sets `scripts.<id>`, the same change as
configKeySet("scripts.<id>", text).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from appliance.config.document import parse
from appliance.errors import InvalidInput, NotFound

FLOW_KEY = re.compile(r"^script_flow__([1-9][0-9]{0,5})$")
_OLD_FLOW_KEY = re.compile(r"^\w+_flow__[0-9]+$")  # what the old clients recognise
_SCRIPT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class FlowKey:
    key: str  # script_flow__N
    script_id: str
    text: str

    @property
    def params(self) -> list[str]:
        return [self.script_id, self.text]


def flow_keys(text: str) -> list[FlowKey]:
    """One key per script of the validated document, in document order."""
    scripts = parse(text).scripts
    return [FlowKey(f"script_flow__{n}", sid, source)
            for n, (sid, source) in enumerate(scripts.items(), start=1)]


def is_flow_key(key: str) -> bool:
    return bool(_OLD_FLOW_KEY.match(key.strip()))


def flow_assignment(text: str, key: str, params: Sequence[str]) -> tuple[str, str]:
    """The dotted key (`scripts.<id>`) and the script text that configKeySet(key, params) means.

    `params` is [id, text] (as configKeys gives it; a middle item is ignored, as the old clients
    do) or [text] to replace the script this key stands for now. A new id adds a script.
    """
    match = FLOW_KEY.match(key.strip())
    if match is None:
        raise NotFound(f"no config key {key!r}: flow keys are script_flow__N "
                       f"(configKeys lists them)")
    if not params:
        raise InvalidInput(f"{key}: params needs the script's id and text, e.g. ['inbound', '...']")
    current = {f.key: f for f in flow_keys(text)}
    if len(params) == 1:
        if key not in current:
            raise NotFound(f"no config key {key!r}: name the new script's id, params [id, text]")
        script_id = current[key].script_id
    else:
        script_id = params[0].strip()
        if not _SCRIPT_ID.match(script_id):
            raise InvalidInput(f"{key}: params item 0 {script_id!r} is not a script id "
                               "(1-64 of A-Z a-z 0-9 _ . -)")
        held = current.get(key)
        if held is not None and held.script_id != script_id:
            raise InvalidInput(f"{key} is script {held.script_id!r}, not {script_id!r}; "
                               "use a new key number to add a script")
    return f"scripts.{script_id}", params[-1]
