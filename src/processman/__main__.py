from processman.cli import main

main()
