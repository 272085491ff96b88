"""The `inception-data` command: the command-line face on top of the library (`inception_data`)
and the Beam pipelines (`pipelines`). Commands parse options and call plain functions; nothing
here converts, lists or parses data itself.
"""
