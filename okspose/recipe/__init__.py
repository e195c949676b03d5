"""Team OKS's recipe chained end to end: the demo, hard-example mining, the experiment table."""
