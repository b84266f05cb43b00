"""The command-line face of gtacli: one module per command, no maths here."""
