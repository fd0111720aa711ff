"""The explorer's one hand-written piece of reactivity: a once-per-action signal and the
per-view record of which inputs changed.

Everything else in the explorer uses param / Panel reactivity directly: the state's cascades
(model → method → layer / head) are ``param.depends(watch=True)`` methods; the status line, the
box info, the tab switcher are ``pn.bind(..., watch=True)`` callbacks; the image browser's filters
are a ``param.depends`` method; the leaderboard and the comparison tabs are ``pn.bind``
functions rendered by Panel. What stays here, and why Panel's own reactivity is not used for it:

:class:`BatchedSelection` (base of ``ExplorerState``) bumps ``version`` once per user action,
after the cascades, inside one ``panel.io.document.hold`` (and, while a HoloViews tab is shown,
one Bokeh ``freeze``). With views watching the selection params directly (``param.depends`` /
``pn.bind`` on ``layer``, ``model`` ...):

- a model change reaches a view once per cascade step (the nested ``method`` / ``layer`` /
  ``head`` update, then the ``model`` event itself), so every view would need a guard against
  doing its work twice anyway, and the HoloViews tabs would re-render twice (200–1300 ms each);
- there is no single point where an action starts and ends, so nothing can wrap it in one
  ``hold``: Panel holds the document for notebook (comm) changes only, so under ``panel serve``
  every property assignment would go out as its own patch message; and nothing can wrap it in
  one ``freeze``: each model a HoloViews pane replaces then makes Bokeh recompute the whole
  document graph (~350 models, ~100 ms each time on the full-size store).

The benchmark's server time does not see either (``benchmarks/explorer.py --repeats 10`` on the
full-size store with per-event watchers and no hold: p95 within the run-to-run noise of a shared
2-core machine): the figures stay cheap because of :meth:`Follower.changed`. The batching is kept
for the message count and the freeze.

Panes that follow the signal are updated by ``pn.bind(show, ..., watch=True)`` assigning
``pane.object``, not by handing Panel the bound function as the pane's object (a reference):
measured on a rendered Markdown pane, 2.8–3.1 ms per update either way for the watcher forms vs
3.5–3.8 ms for the reference (param's ``_sync_refs`` path), +0.7 ms per pane per click.

:class:`Follower` (one per view) is what a view hangs on the signal: ``follow`` (call an update
after each action while the view is shown; a hidden tab skips updates and catches up when shown
again, which neither ``param.depends`` nor ``pn.bind`` can pause), ``trigger`` (a counter bumped
only when given params changed: what ``pn.bind`` and HoloViews streams listen to), and the
per-part memo ``changed`` / ``memo`` that lets a figure re-send only the parts whose inputs
changed (the photo is not re-sent on a layer change) instead of rebuilding its Bokeh models,
which is what keeps warm interactions well under the 150 ms target.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import panel as pn
import param
from panel.io.document import hold

__all__ = ["BatchedSelection", "Follower", "Trigger"]

_UNSET = object()


class BatchedSelection(param.Parameterized):
    """A selection whose ``version`` is bumped once per consistent change.

    Subclasses call :meth:`_watch_selection` with the names of every param a view may depend
    on, and run their cascades (re-deriving valid choices after a change) inside
    :meth:`cascade`, so that one user action bumps ``version`` exactly once, after the cascade.
    """

    version = param.Integer(default=0, precedence=-1,
                            doc="Bumped once per consistent selection change (views listen)")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._depth = 0
        #: Batch each action's document changes under one Bokeh ``freeze`` (set while a view
        #: that replaces models, i.e. a HoloViews plot, is shown).
        self.freeze_updates = False

    def _watch_selection(self, names: Sequence[str]) -> None:
        # A high precedence: runs after the ``param.depends`` cascades (precedence -1).
        self.param.watch(self._bump, list(names), precedence=10)

    @contextmanager
    def cascade(self) -> Iterator[None]:
        """Changes made inside are part of the current action (no ``version`` bump of their
        own; the outermost event bumps once when the cascade is done)."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def _bump(self, *_events) -> None:
        if self._depth:
            return
        doc = pn.state.curdoc
        if doc is None:
            self.version += 1
            return
        # The views' updates go out together when the hold exits. ``freeze`` makes Bokeh
        # recompute the whole model graph (~350 models, ~100 ms) once on exit: worth it only
        # while HoloViews plots (which replace models, each change a recompute) are shown;
        # the always-visible figures only assign data and plain properties.
        with hold(doc, freeze=self.freeze_updates):
            self.version += 1


class Trigger(param.Parameterized):
    """A counter that ``pn.bind`` / HoloViews streams listen to (see :meth:`Follower.trigger`)."""

    count = param.Integer(default=0)


class Follower:
    """A view's hold on a :class:`BatchedSelection`: updates after each action while active,
    and the memo of each part's last inputs.

    Parameters
    ----------
    state : the shared selection (its ``version`` is watched).
    """

    def __init__(self, state: BatchedSelection) -> None:
        self.state = state
        self.active = True
        self._updaters: list[Callable[[], None]] = []
        self._keys: dict[str, Hashable] = {}
        self._values: dict[str, tuple[Hashable, Any]] = {}

    def set_active(self, active: bool) -> None:
        """Show (True: bring every part up to date now) or hide (False: skip updates)."""
        self.active = bool(active)
        if self.active:
            for update in self._updaters:
                update()

    def follow(self, update: Callable[[], None]) -> None:
        """Call ``update()`` after every user action while active."""

        def on_version(*_):
            if self.active:
                update()

        self._updaters.append(update)
        self.state.param.watch(on_version, "version")

    def on_change(self, names: Sequence[str], callback: Callable[[], None]) -> None:
        """Call ``callback()`` after a user action that changed any of the state's ``names``
        (once per action, never for changes it does not show)."""
        state = self.state
        last = [tuple(getattr(state, n) for n in names)]

        def update():
            key = tuple(getattr(state, n) for n in names)
            if key != last[0]:
                last[0] = key
                callback()

        self.follow(update)

    def trigger(self, *names: str) -> Trigger:
        """A counter bumped once per user action that changes any of ``names``."""
        trig = Trigger()

        def bump():
            trig.count += 1

        self.on_change(names, bump)
        return trig

    def changed(self, name: str, key: Hashable) -> bool:
        """True (and remember ``key``) when ``key`` differs from the last one seen for
        ``name``: figures re-send a part only when its inputs changed."""
        if self._keys.get(name, _UNSET) == key:
            return False
        self._keys[name] = key
        return True

    def memo(self, name: str, key: Hashable, build: Callable[[], Any]) -> Any:
        """The value built last time for ``name`` when ``key`` is unchanged, else a new one."""
        hit = self._values.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = build()
        self._values[name] = (key, value)
        return value
