"""Tests of the Helm chart: rendered offline with the Helm SDK, asserted on the objects."""
