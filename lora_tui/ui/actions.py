"""User actions as data: one declaration per action, from which come the key bindings, the F1 help
and the command palette entries.

Bindings, help text and palette commands used to be three hand-kept lists that drifted apart. Now a
screen (or a widget) declares an :class:`Actions` table once::

    class MyScreen(ActionScreen):
        ACTIONS = Actions("mine", "My screen", intro="What this screen is for.", actions=(
            Action("mine.rescan", "r", "Rescan", "rescan", title="Rescan images and captions"),
        ))
        BINDINGS = ACTIONS.bindings()

* ``id`` is the binding id users remap in ``keymap.toml`` (``[keys] "mine.rescan" = "ctrl+r"``);
* ``BINDINGS`` come from :meth:`Actions.bindings`;
* the F1 help (:attr:`ActionScreen.HELP`) lists every action with the keys in force, remaps included;
* the palette (:class:`ScreenActionsProvider`, in ``App.COMMANDS``) lists the actions of the screen it
  was opened over, whose ``when`` holds, as "<group>: <title>".

Every table is also kept in :data:`REGISTRY` (by its ``name``) so tests and docs can list them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

When = Callable[[Any], bool]


@dataclass(frozen=True)
class Action:
    """One thing the user can do.

    ``keys``: Textual key list ("enter,e"; "" = palette only). ``action``: the action string run on
    the screen (or widget) that declares it, e.g. ``mark('reviewed')``. ``title``: the palette and
    help line (default: ``description``, the footer's short label). ``group``: the palette prefix
    (default: the table's). ``when(screen)``: whether it applies now (palette only; keys always
    reach the action, which says why it does nothing). ``on``: the screen attribute holding the
    controller that does it (``on="filters"``: ``action_x`` calls ``screen.filters.x(...)``), so a
    screen needs no one-line action methods that only pass the call on.
    """

    id: str
    keys: str
    description: str
    action: str
    title: str = ""
    group: str = ""
    show: bool = True
    priority: bool = False
    palette: bool = True
    when: When | None = None
    tooltip: str = ""
    on: str = ""  # a controller attribute of the screen whose method of the same name does it

    @property
    def name(self) -> str:
        """The action's name without its arguments ("mark" for "mark('reviewed')")."""
        return self.action.split("(", 1)[0]

    @property
    def label(self) -> str:
        return self.title or self.description


REGISTRY: dict[str, Actions] = {}


@dataclass(frozen=True)
class Actions:
    """The actions of one screen or widget (``name``: its id prefix; ``heading``: the help heading)."""

    name: str
    heading: str
    actions: tuple[Action, ...]
    intro: str = ""
    group: str = ""
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        ids = [a.id for a in self.actions]
        duplicates = {i for i in ids if ids.count(i) > 1}
        if duplicates:
            raise ValueError(f"{self.name}: duplicate action ids {sorted(duplicates)}")
        REGISTRY[self.name] = self

    def __iter__(self):
        return iter(self.actions)

    def bindings(self) -> list[Binding]:
        """Textual bindings for every action with keys (remappable by id through the app's keymap)."""
        return [Binding(a.keys, a.action, a.description, show=a.show, priority=a.priority, id=a.id,
                        tooltip=a.tooltip)
                for a in self.actions if a.keys]

    def palette_entries(self, target: Any) -> list[tuple[str, str]]:
        """(title, action) pairs the palette offers over ``target`` now."""
        out = []
        for a in self.actions:
            if not a.palette or (a.when is not None and not a.when(target)):
                continue
            group = a.group or self.group or self.name
            out.append((f"{group}: {a.label}", a.action))
        return out

    def help(self, keymap: dict[str, str] | None = None, display: Callable[[str], str] | None = None) -> str:
        """Markdown for the F1 help: heading, intro, one line per action with the keys in force."""
        keymap = keymap or {}
        lines = [f"## {self.heading}"]
        if self.intro:
            lines += [self.intro.strip(), ""]
        for a in self.actions:
            keys = keymap.get(a.id, a.keys)
            shown = " / ".join((display or _key_display)(k) for k in keys.split(",") if k)
            lines.append(f"- **{shown}** {a.label}" if shown else f"- {a.label} (command palette)")
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


_KEY_NAMES = {"slash": "/", "question_mark": "?", "comma": ",", "space": "space"}


def _key_display(key: str) -> str:
    key = key.strip()
    return _KEY_NAMES.get(key, key)


def help_for(widget: Any, tables: Iterable[Actions]) -> str:
    """The help markdown of ``tables`` with the app's keymap applied (remapped keys are shown)."""
    try:
        app = widget.app
    except Exception:  # not mounted: the declared keys
        app = None
    settings = getattr(app, "settings", None)
    keymap = dict(getattr(settings, "keymap", None) or {})
    return "\n".join(t.help(keymap) for t in tables)


class ActionScreen(Screen):
    """A screen whose ``ACTIONS`` make its bindings, its F1 help and its palette entries.

    Set ``BINDINGS = ACTIONS.bindings()`` in the subclass; ``HELP_TABLES`` adds the tables of the
    widgets it holds (their keys are shown in the help too).
    """

    ACTIONS: Actions | None = None
    HELP_TABLES: tuple[Actions, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = cls.__dict__.get("ACTIONS")
        for a in table or ():
            if a.on and f"action_{a.name}" not in cls.__dict__:
                setattr(cls, f"action_{a.name}", _delegate(a.on, a.name))

    @property  # type: ignore[override]
    def HELP(self) -> str | None:
        tables = [t for t in (self.ACTIONS, *self.HELP_TABLES) if t is not None]
        return help_for(self, tables) if tables else None


def _delegate(attribute: str, method: str) -> Callable[..., Any]:
    def action(self: Any, *args: Any) -> Any:
        return getattr(getattr(self, attribute), method)(*args)

    action.__name__ = f"action_{method}"
    action.__doc__ = f"Run by the actions table: ``self.{attribute}.{method}()``."
    return action


def _screen_entries(screen: Any) -> list[tuple[str, str]]:
    table = getattr(screen, "ACTIONS", None)
    return table.palette_entries(screen) if isinstance(table, Actions) else []


class ScreenActionsProvider(Provider):
    """Palette commands: the actions of the screen the palette was opened over.

    While the palette is open ``app.screen`` is the palette itself; Textual hands a provider the
    screen it was opened over as ``self.screen``, which is the one whose actions apply.
    """

    def _available(self) -> list[tuple[str, str]]:
        return _screen_entries(self.screen)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        screen = self.screen
        for title, action in self._available():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(screen.run_action, action), help=title)

    async def discover(self) -> Hits:
        screen = self.screen
        for title, action in self._available():
            yield DiscoveryHit(title, partial(screen.run_action, action), help=title)


def all_tables() -> dict[str, Actions]:
    """Every table of the app, the lazily loaded screens' included."""
    import importlib
    import pkgutil

    import lora_tui.ui.app  # noqa: F401
    import lora_tui.ui.screens as screens

    for info in pkgutil.iter_modules(screens.__path__):
        importlib.import_module(f"{screens.__name__}.{info.name}")
    from lora_tui.ui import actions  # the registry the screens filled (not __main__'s copy)

    return dict(actions.REGISTRY)


if __name__ == "__main__":  # python -m lora_tui.ui.actions: the ids to remap in keymap.toml
    for table in all_tables().values():
        for a in table:
            print(f"{a.id:<28} {a.keys or '(palette)':<20} {a.label}")
