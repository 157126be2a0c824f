from mysqlsts.cli import main

raise SystemExit(main())
