"""Source access: may this pod read this image at its source? One package for the whole check.

- :mod:`.settings`: ``source.access`` (:class:`~.settings.AccessSettings`), and the policy for a
  pod naming a mirror image directly (:class:`~.settings.MirrorReferencePolicy`);
- :mod:`.verdicts`: the answers (:class:`~.verdicts.Verdict`, :class:`~.verdicts.Access`) and
  the protocol admission asks (:class:`~.verdicts.SourceAccess`), with the open door used when
  ``source.checkAccess`` is off;
- :mod:`.refusal` (pure): what a refused access becomes (``skipped-private``,
  ``origin-private``...) and the words that deny a pod under ``mirrorReferences: deny``;
- :mod:`.checker`: the registry-backed check (:class:`~.checker.RegistryAccess`): anonymous
  first, then the pod's own pull secrets, answers cached per verdict;
- :mod:`.keyring`: pull-secret credentials matched to images as the kubelet does;
- :mod:`.source_credentials`: the pull secrets a pod can use, read from informers over the
  cluster's Secrets and ServiceAccounts;
- :mod:`.remembered`: public answers remembered (:class:`~.remembered.PublicAnswers`), in
  memory or, through :func:`~.remembered.public_answers`, in the ConfigMap store
  :mod:`swapper.kube.remembered` provides.

The wiring builds the check (:func:`swapper.wiring.build_backends`); :mod:`swapper.mutation`
turns its answers into decisions.
"""
