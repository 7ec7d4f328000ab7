module annotrace/dwarfinfo

go 1.23.0
