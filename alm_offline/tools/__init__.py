"""The tools that read or drive runs: ``evaluate`` (alm eval), ``analysis`` (alm analyze),
``plotting`` (alm plot), ``bench`` (alm bench) and ``sweep`` (alm sweep)."""
