"""Test support shared by every test folder: helpers, strategies, the fault report, servers."""
