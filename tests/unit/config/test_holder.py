"""ConfigHolder: subscribers switch in order; a refusal undoes the switched ones, keeps the old."""

from __future__ import annotations

from appliance.config.defaults import DEFAULT_TEXT
from appliance.config.holder import ConfigHolder, Running
from appliance.config.schema import Config


class Part:
    def __init__(self, name: str, log: list[str], refuse: bool = False) -> None:
        self.name, self.log, self.refuse = name, log, refuse

    def apply(self, old: Config, new: Config) -> None:
        if self.refuse and new.queue.workers == 9:
            raise RuntimeError("port in use")
        self.log.append(f"{self.name}:{old.queue.workers}->{new.queue.workers}")


def _holder(log: list[str], refuse: bool) -> ConfigHolder:
    holder = ConfigHolder(Running(revision=1, text=DEFAULT_TEXT, config=Config()))
    holder.subscribe(Part("a", log))
    holder.subscribe(Part("b", log, refuse=refuse))
    return holder


def test_applies_to_every_subscriber_in_order() -> None:
    log: list[str] = []
    holder = _holder(log, refuse=False)
    assert holder.offer(2, DEFAULT_TEXT.replace("workers = 4", "workers = 9"))
    assert log == ["a:4->9", "b:4->9"] and holder.running.revision == 2
    assert holder.offer(2, holder.running.text) and len(log) == 2  # nothing new: nothing done


def test_refusal_rolls_back_and_keeps_last_good() -> None:
    log: list[str] = []
    holder = _holder(log, refuse=True)
    text = DEFAULT_TEXT.replace("workers = 4", "workers = 9")
    assert not holder.offer(2, text)
    assert log == ["a:4->9", "a:9->4"]
    assert holder.running.revision == 1 and holder.config.queue.workers == 4
    assert "port in use" in holder.problem
    assert not holder.offer(2, text) and len(log) == 2  # the same revision is not retried
    assert holder.offer(3, DEFAULT_TEXT.replace("workers = 4", "workers = 5"))
    assert holder.problem == "" and holder.running.revision == 3


def test_invalid_text_is_refused_without_calling_anyone() -> None:
    log: list[str] = []
    holder = _holder(log, refuse=False)
    assert not holder.offer(2, "[queue]\nworkers = 0\n")
    assert log == [] and "line 2, column 1" in holder.problem
