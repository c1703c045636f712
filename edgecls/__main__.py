from edgecls.cli import main

main()
