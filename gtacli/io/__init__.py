"""The ground floor: safe loading of untrusted files, atomic writes, hashing. Imports nothing else of gtacli
except `gtacli.errors`."""
