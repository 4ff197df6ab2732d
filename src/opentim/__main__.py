from opentim.cli import main

main()
