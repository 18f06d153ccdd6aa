CREATE TABLE "task_modules" (
	"task_id" text NOT NULL,
	"position" integer NOT NULL,
	"name" text NOT NULL,
	"purpose" text DEFAULT '' NOT NULL,
	"interface" text DEFAULT '' NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"code" text,
	"tests" text,
	"quality_score" real,
	"test_report" jsonb,
	"iterations" integer DEFAULT 0 NOT NULL,
	CONSTRAINT "task_modules_task_id_position_pk" PRIMARY KEY("task_id","position")
);
--> statement-breakpoint
CREATE TABLE "tasks" (
	"id" text PRIMARY KEY NOT NULL,
	"owner_id" text NOT NULL,
	"prompt" text NOT NULL,
	"answers" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"model" text NOT NULL,
	"max_iterations" integer NOT NULL,
	"status" text DEFAULT 'queued' NOT NULL,
	"current_module" text,
	"iteration" integer DEFAULT 0 NOT NULL,
	"modules_complete" integer DEFAULT 0 NOT NULL,
	"total_modules" integer DEFAULT 0 NOT NULL,
	"error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "task_modules" ADD CONSTRAINT "task_modules_task_id_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."tasks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tasks" ADD CONSTRAINT "tasks_owner_id_users_id_fk" FOREIGN KEY ("owner_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "tasks_owner_created_idx" ON "tasks" USING btree ("owner_id","created_at");