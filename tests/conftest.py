"""Shared by every test directory. Being here puts tests/ on sys.path, so test modules can import the helpers in
tests/_shardline.py."""
