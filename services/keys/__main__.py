from services.keys.bootstrap import main

main()
