"""People: accounts, sessions, memberships, member administration, sign-in, and the role matrix."""
