from services.audit.bootstrap import main

main()
