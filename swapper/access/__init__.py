"""Source access: may this pod read this image at its source? One package for the whole check.

- :mod:`.verdicts`: the answers (:class:`~.verdicts.Verdict`, :class:`~.verdicts.Access`) and
  the protocol admission asks (:class:`~.verdicts.SourceAccess`), with the open door used when
  ``source.checkAccess`` is off;
- :mod:`.checker`: the registry-backed check (:class:`~.checker.RegistryAccess`): anonymous
  first, then the pod's own pull secrets, answers cached per verdict;
- :mod:`.remembered`: public answers remembered (:class:`~.remembered.PublicAnswers`), in
  memory; the ConfigMap store behind them is :mod:`swapper.kube.remembered`.

The settings are ``source.access`` (:class:`swapper.config.AccessSettings`); the wiring builds
the check (:func:`swapper.wiring.build_backends`); the decisions it leads to are
:mod:`swapper.mutation`'s (``skipped-private``, ``origin-private``...).
"""
