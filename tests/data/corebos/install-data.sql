-- Rows of a just-installed coreBOS, copied verbatim from schema/corebos_justinstalled_empty.sql at
-- tsolucio/corebos 5052d591dd2d233a5a18027817b77f70e8203978 (see README.md): the modules the import
-- reads, their names' tables and every email field (uitype 13, and Users' 104 if any).
-- One row a line: the table, then its values in the dump's column order.
vtiger_tab (4,'Contacts',0,6,'Contacts',NULL,NULL,0,0,1,NULL,'Sales')
vtiger_tab (6,'Accounts',0,5,'Accounts',NULL,NULL,0,0,1,NULL,'Sales')
vtiger_tab (7,'Leads',0,4,'Leads',NULL,NULL,0,0,1,NULL,'Sales')
vtiger_tab (10,'Emails',0,10,'Emails',NULL,NULL,0,0,1,NULL,'Tools')
vtiger_tab (29,'Users',0,-1,'Users',NULL,NULL,0,1,0,NULL,NULL)
vtiger_entityname (4,'Contacts','vtiger_contactdetails','firstname,lastname','contactid','contact_id','0','vtiger_crmentity')
vtiger_entityname (6,'Accounts','vtiger_account','accountname','accountid','account_id','0','vtiger_crmentity')
vtiger_entityname (7,'Leads','vtiger_leaddetails','firstname,lastname','leadid','leadid','0','vtiger_crmentity')
vtiger_entityname (10,'Emails','vtiger_activity','subject','activityid','activityid','0','vtiger_crmentity')
vtiger_field (6,9,'email1','vtiger_account',1,'13','email1','Email',1,2,'',100,10,9,1,'E~O',1,NULL,'BAS',1,NULL)
vtiger_field (6,11,'email2','vtiger_account',1,'13','email2','Other Email',1,2,'',100,11,9,1,'E~O',1,NULL,'ADV',1,NULL)
vtiger_field (7,46,'email','vtiger_leaddetails',1,'13','email','Email',1,2,'',100,11,13,1,'E~O',2,5,'BAS',1,NULL)
vtiger_field (7,55,'secondaryemail','vtiger_leaddetails',1,'13','secondaryemail','Secondary Email',1,2,'',100,18,13,1,'E~O',1,NULL,'ADV',1,NULL)
vtiger_field (4,80,'email','vtiger_contactdetails',1,'13','email','Email',1,2,'',100,15,4,1,'E~O',2,5,'BAS',1,NULL)
vtiger_field (4,83,'secondaryemail','vtiger_contactdetails',1,'13','secondaryemail','Secondary Email',1,2,'',100,20,4,1,'E~O',1,NULL,'ADV',1,NULL)
vtiger_field (29,482,'email1','vtiger_users',1,'13','email1','Email',1,0,'',100,4,77,1,'E~M',1,NULL,'BAS',1,NULL)
vtiger_field (29,495,'email2','vtiger_users',1,'13','email2','Other Email',1,0,'',100,4,79,1,'E~O',1,NULL,'BAS',1,NULL)
vtiger_field (29,497,'secondaryemail','vtiger_users',1,'13','secondaryemail','Secondary Email',1,0,'',100,6,79,1,'E~O',1,NULL,'BAS',1,NULL)
