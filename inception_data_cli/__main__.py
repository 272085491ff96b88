"""`python -m inception_data_cli`: the same as the `inception-data` command."""

from inception_data_cli.main import main

main()
