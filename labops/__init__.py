"""Helpers behind `fabfile.py`: the hosts from the Ansible inventory, parallel runs, what a node reports."""
