from mfgvision.cli import main

raise SystemExit(main())
